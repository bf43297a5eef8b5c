// Package nodedriver hides where a node is from the conformance suites. A Driver pulls an
// image on a node through the CRI, runs a container from it where the lab allows, and lists
// and reads the node's decryption keys tree (CRI-O's decryption_keys_path). The suites use
// only this interface and the Kubernetes client, so one suite body runs on the node lab (package
// nodelab), on kind (package kind) and on any cluster (package cluster).
//
// All three speak one node agent protocol (protocol.go; the node side is package agent, the
// binary cmd/keysync-node-agent) through a Transport: in-process on the node lab, docker exec
// on kind, pod exec on a cluster. Agent is the protocol's client; it also audits the keys tree
// on the node (Auditor, audit.go), so that no key bytes travel to judge it.
//
// A lab that cannot do an operation returns an error wrapping ErrUnsupported; the suites skip
// the step that needs it with the error's message, never silently.
//
// Hooks: Config lets a user replace each operation without writing a Driver, following
// csi-sanity's "createmountpathcmd"/"checkpathcmd" model. See Config for the precedence.
package nodedriver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// ErrUnsupported is wrapped by every error of an operation the lab cannot perform.
var ErrUnsupported = errors.New("operation not supported by this node driver")

// Driver is one lab's way of reaching its nodes. Every method takes the node's Kubernetes
// name (as Nodes returns it). Implementations must be safe for concurrent use.
type Driver interface {
	// Name names the driver in messages ("nodelab", "kind", ...).
	Name() string
	// Nodes lists the nodes the suites may use, in a stable order.
	Nodes(ctx context.Context) ([]string, error)
	// PullImage pulls ref on node through the CRI (ImageService.PullImage), as the kubelet
	// would. The error carries the runtime's message verbatim (the suites match
	// "missing private key needed for decryption"). An image the pull added should be removed
	// again, leaving the node as it was found.
	PullImage(ctx context.Context, node, ref string) error
	// RunImage runs one container from ref on node to completion and returns what it
	// printed (stdout and stderr). It returns an error wrapping ErrUnsupported where the lab
	// cannot run containers.
	RunImage(ctx context.Context, node, ref string) (string, error)
	// ListKeys lists every entry below the node's keys tree (the decryption_keys_path),
	// without following symlinks. The root itself is not listed; a missing tree is empty.
	ListKeys(ctx context.Context, node string) ([]Entry, error)
	// ReadKey returns the bytes of the regular file at relpath (slash-separated, relative to
	// the keys tree). A missing file yields an error wrapping fs.ErrNotExist.
	ReadKey(ctx context.Context, node, relpath string) ([]byte, error)
}

// ArgsRunner is implemented by drivers that can pass arguments to the image's entrypoint
// (replacing the image's CMD, like a Pod's args). The suites run the fixtures with "-once" so
// that their program prints its marker and exits instead of sleeping. Use RunImage (the
// function) to call it.
type ArgsRunner interface {
	RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error)
}

// RunImage runs ref on node with args through d's ArgsRunner when it has one; without args it
// calls d.RunImage. A driver that cannot pass args yields ErrUnsupported.
func RunImage(ctx context.Context, d Driver, node, ref string, args ...string) (string, error) {
	if len(args) == 0 {
		return d.RunImage(ctx, node, ref)
	}
	if ar, ok := d.(ArgsRunner); ok {
		return ar.RunImageArgs(ctx, node, ref, args)
	}
	return "", fmt.Errorf("node driver %s cannot pass arguments to a container (implement nodedriver.ArgsRunner): %w", d.Name(), ErrUnsupported)
}

// EntryType is the closed set of kinds an entry of a keys tree can be.
type EntryType string

// The entry types. A command hook prints exactly these words.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "directory"
	TypeSymlink EntryType = "symlink"
	TypeOther   EntryType = "other"
)

// ParseEntryType validates s against the closed set.
func ParseEntryType(s string) (EntryType, error) {
	switch t := EntryType(s); t {
	case TypeFile, TypeDir, TypeSymlink, TypeOther:
		return t, nil
	}
	return "", fmt.Errorf("unknown entry type %q (want file, directory, symlink or other)", s)
}

// TypeOf maps a file mode to its EntryType.
func TypeOf(m fs.FileMode) EntryType {
	switch {
	case m.IsRegular():
		return TypeFile
	case m.IsDir():
		return TypeDir
	case m&fs.ModeSymlink != 0:
		return TypeSymlink
	}
	return TypeOther
}

// Entry is one entry of a keys tree.
type Entry struct {
	// Path is slash-separated and relative to the keys tree ("synced/foo.pem").
	Path string
	// Mode holds the permission bits (Perm) of the entry.
	Mode fs.FileMode
	// Size is the file's size in bytes (0 for non-files).
	Size int64
	Type EntryType
}

// CleanRelPath validates a path relative to the keys tree: slash-separated, not absolute,
// not escaping the tree, not empty. It returns the cleaned path.
func CleanRelPath(rel string) (string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains(rel, "\\") {
		return "", fmt.Errorf("invalid key path %q: must be relative and slash-separated", rel)
	}
	c := path.Clean(rel)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("invalid key path %q: must stay inside the keys tree", rel)
	}
	return c, nil
}
