package doctor

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
)

// NodeInspector reaches a node's keys tree and CRI-O configuration (through a short-lived
// agent pod in the real implementation). It never returns key bytes.
type NodeInspector interface {
	// Audit returns one verdict per entry of the tree CRI-O walks (its decryption_keys_path).
	Audit(ctx context.Context, node string) ([]Verdict, error)
	// DecryptionKeysPath returns CRI-O's effective decryption_keys_path on the node.
	DecryptionKeysPath(ctx context.Context, node string) (string, error)
}

// EntryType is the kind of a keys tree entry.
type EntryType string

// The entry types a Verdict may carry.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
	TypeOther   EntryType = "other"
)

// Verdict is the node side's judgement of one entry of the keys tree: metadata and whether
// CRI-O can use it, never its bytes.
type Verdict struct {
	// Path is relative to the tree's root (CRI-O's decryption_keys_path).
	Path string      `json:"path"`
	Type EntryType   `json:"type"`
	Mode fs.FileMode `json:"mode"`
	Size int64       `json:"size"`
	// Accepted is true for a regular file CRI-O can use as a private key.
	Accepted bool `json:"accepted"`
	// Why says why a file is not accepted (e.g. ocicrypt's "Unknown decryption key type").
	Why string `json:"why,omitempty"`
	// SHA256 is the hex digest of the file's bytes (files only).
	SHA256 string `json:"sha256,omitempty"`
}

func noInspector(e *Env) []Result {
	why := e.NoInspectorReason
	if why == "" {
		why = "no node inspector configured"
	}
	return []Result{skip("", why+"; the node-side checks did not run")}
}

func listNodes(ctx context.Context, e *Env) ([]string, *Result) {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		r := apiFail("", "nodes", err, "")
		return nil, &r
	}
	out := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out, nil
}

// checkNodeTrees wants every entry of every node's keys tree to be something CRI-O reads
// without failing: no symlinks, no non-regular files, no temp files, only private keys, none
// readable by group or others.
func checkNodeTrees(ctx context.Context, e *Env) []Result {
	if e.Inspector == nil {
		return noInspector(e)
	}
	nodes, r := listNodes(ctx, e)
	if r != nil {
		return []Result{*r}
	}
	var out []Result
	for _, n := range nodes {
		verdicts, err := e.Inspector.Audit(ctx, n)
		if err != nil {
			out = append(out, fail("node "+n, fmt.Sprintf("cannot audit the keys tree: %s", clip(err.Error())),
				"check that the node agent can run on the node"))
			continue
		}
		sort.Slice(verdicts, func(i, j int) bool { return verdicts[i].Path < verdicts[j].Path })
		keys, bad := 0, 0
		for _, v := range verdicts {
			problems, fix := judge(v)
			if len(problems) == 0 {
				if v.Type == TypeFile {
					keys++
				}
				continue
			}
			bad++
			out = append(out, fail("node "+n, v.Path+": "+strings.Join(problems, "; "), fix))
		}
		if bad == 0 {
			out = append(out, ok("node "+n, fmt.Sprintf("%d entries, %d private key(s), all usable by CRI-O", len(verdicts), keys)))
		}
	}
	return out
}

const removeFix = "remove it from the keys tree: CRI-O fails every pull on the node, plain images included, while it is there"

// judge lists what is wrong with one entry and what to do.
func judge(v Verdict) ([]string, string) {
	switch v.Type {
	case TypeDir:
		return nil, ""
	case TypeSymlink:
		return []string{"symbolic link (CRI-O: symbolic links not supported in decryption keys paths)"},
			"remove it; never mount a Secret volume or link files into the keys tree"
	case TypeFile:
	default:
		return []string{"not a regular file"}, removeFix
	}
	var problems []string
	fix := ""
	if isTempName(path.Base(v.Path)) {
		problems = append(problems, "temp or hidden file (CRI-O reads it as a key)")
		fix = removeFix
	}
	if !v.Accepted {
		why := v.Why
		if why == "" {
			why = "not a private key"
		}
		problems = append(problems, "CRI-O cannot use it: "+why)
		fix = removeFix
	}
	if perm := v.Mode.Perm(); perm&0o077 != 0 {
		problems = append(problems, fmt.Sprintf("mode %04o lets group/others read a private key, want 0600", perm))
		if fix == "" {
			fix = "chmod 0600 it (and fix what wrote it)"
		}
	}
	return problems, fix
}

// isTempName reports whether a base name looks like a temp, hidden or editor file.
func isTempName(base string) bool {
	return strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") ||
		strings.Contains(base, ".tmp-") || strings.HasSuffix(base, ".tmp") ||
		strings.HasSuffix(base, ".swp") || strings.HasSuffix(base, ".part")
}

// checkNodeKeysPath wants CRI-O's decryption_keys_path on every node to contain the
// directory the synchronizer writes (its --keys-dir, mapped to the host through its hostPath
// volume).
func checkNodeKeysPath(ctx context.Context, e *Env) []Result {
	if e.Inspector == nil {
		return noInspector(e)
	}
	nodes, r := listNodes(ctx, e)
	if r != nil {
		return []Result{*r}
	}
	syncDir := names.KeysDir
	if ds, err := getDaemonSet(ctx, e); err == nil {
		syncDir = hostKeysDir(ds)
	}
	var out []Result
	for _, n := range nodes {
		p, err := e.Inspector.DecryptionKeysPath(ctx, n)
		if err != nil {
			out = append(out, fail("node "+n, fmt.Sprintf("cannot read CRI-O's decryption_keys_path: %s", clip(err.Error())),
				"check that the node agent can run on the node"))
			continue
		}
		if covers(p, syncDir) {
			out = append(out, ok("node "+n, fmt.Sprintf("CRI-O's decryption_keys_path %s covers the synchronizer's %s", p, syncDir)))
			continue
		}
		out = append(out, fail("node "+n, fmt.Sprintf("CRI-O's decryption_keys_path is %s, which does not contain the synchronizer's %s: CRI-O never sees the synced keys", p, syncDir),
			fmt.Sprintf("set decryption_keys_path = %q in [crio.runtime] (a drop-in in /etc/crio/crio.conf.d) and restart CRI-O, or point the synchronizer's --keys-dir under %s", names.KeysRoot, p)))
	}
	return out
}

// covers reports whether dir is root or below it.
func covers(root, dir string) bool {
	root, dir = path.Clean(root), path.Clean(dir)
	return dir == root || strings.HasPrefix(dir, strings.TrimSuffix(root, "/")+"/")
}

// hostKeysDir is the host directory the synchronizer writes: its --keys-dir mapped through the
// hostPath volume mounted over it; names.KeysDir when the DaemonSet does not say.
func hostKeysDir(ds *appsv1.DaemonSet) string {
	spec := &ds.Spec.Template.Spec
	for _, c := range spec.Containers {
		dir := flagValue(append(append([]string{}, c.Command...), c.Args...), "--keys-dir")
		if dir == "" {
			continue
		}
		var best *corev1.VolumeMount
		for i := range c.VolumeMounts {
			m := &c.VolumeMounts[i]
			if covers(m.MountPath, dir) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
				best = m
			}
		}
		if best == nil {
			return dir
		}
		for _, v := range spec.Volumes {
			if v.Name == best.Name && v.HostPath != nil {
				rel := strings.TrimPrefix(path.Clean(dir), path.Clean(best.MountPath))
				return path.Join(v.HostPath.Path, best.SubPath, rel)
			}
		}
		return dir
	}
	return names.KeysDir
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, found := strings.CutPrefix(a, name+"="); found {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
