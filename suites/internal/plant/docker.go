package plant

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"time"
)

// Docker plants in node containers (NODE_ACCESS=docker: the kind lab, each node a container
// named like the node) with the docker CLI: files arrive by `docker cp -` (a tar stream, so
// mode and owner are exact) into Stage and are renamed into place with `docker exec mv`;
// Stat and Remove run coreutils in the node (`docker exec`).
type Docker struct {
	// Stage is a directory in each node container outside the keys tree, on its filesystem
	// (for /etc/crio/keys: /etc/crio).
	Stage string
	// Docker is the docker CLI (default "docker").
	Docker string
}

var _ Ops = Docker{}

func (d Docker) docker() string {
	if d.Docker == "" {
		return "docker"
	}
	return d.Docker
}

// run runs `docker ARGS` with stdin and returns its stdout; a failure carries stderr.
func (d Docker) run(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.docker(), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (d Docker) exec(ctx context.Context, node string, argv ...string) (string, error) {
	return d.run(ctx, nil, append([]string{"exec", node}, argv...)...)
}

// stageName is a fresh name in Stage.
func (d Docker) stageName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("failed to name a staged file: %w", err)
	}
	return ".keysync-plant-" + hex.EncodeToString(b[:]), nil
}

// WriteFile implements Ops.
func (d Docker) WriteFile(ctx context.Context, node, p string, data []byte, mode fs.FileMode) error {
	name, err := d.stageName()
	if err != nil {
		return err
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	hdr := &tar.Header{Name: name, Mode: int64(mode.Perm()), Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Now()}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("failed to archive the file: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("failed to archive the file: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to archive the file: %w", err)
	}
	staged := path.Join(d.Stage, name)
	if _, err := d.run(ctx, archive.Bytes(), "cp", "-", node+":"+d.Stage); err != nil {
		// A cp that failed or was cancelled may have extracted the file all the same.
		d.removeStaged(ctx, node, staged)
		return fmt.Errorf("failed to copy the file into node %s: %w", node, err)
	}
	if _, err := d.exec(ctx, node, "mv", "-f", "-T", staged, p); err != nil {
		d.removeStaged(ctx, node, staged)
		return fmt.Errorf("failed to rename the file into place in node %s: %w", node, err)
	}
	return nil
}

// stagedRemoveTimeout bounds the removal of a staged file after a failed or cancelled step.
const stagedRemoveTimeout = 10 * time.Second

// removeStaged removes staged (a file of Stage) in node, best effort: on ctx's values but not
// its cancellation (the step it follows may have failed because ctx was cancelled), bounded by
// stagedRemoveTimeout.
func (d Docker) removeStaged(ctx context.Context, node, staged string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stagedRemoveTimeout)
	defer cancel()
	_, _ = d.exec(ctx, node, "rm", "-f", "--", staged)
}

// Symlink implements Ops.
func (d Docker) Symlink(ctx context.Context, node, target, p string) error {
	name, err := d.stageName()
	if err != nil {
		return err
	}
	staged := path.Join(d.Stage, name)
	if _, err := d.exec(ctx, node, "ln", "-s", "-T", target, staged); err != nil {
		d.removeStaged(ctx, node, staged)
		return fmt.Errorf("failed to create the symlink in node %s: %w", node, err)
	}
	if _, err := d.exec(ctx, node, "mv", "-f", "-T", staged, p); err != nil {
		d.removeStaged(ctx, node, staged)
		return fmt.Errorf("failed to rename the symlink into place in node %s: %w", node, err)
	}
	return nil
}

// statScript prints one line for $1: "none", "other", "symlink TARGET" or "file SHA256".
const statScript = `if [ -L "$1" ]; then printf 'symlink %s\n' "$(readlink -- "$1")"
elif [ -f "$1" ]; then printf 'file %s\n' "$(head -c 1048576 -- "$1" | sha256sum | cut -d ' ' -f 1)"
elif [ -e "$1" ]; then echo other
else echo none; fi`

// Stat implements Ops.
func (d Docker) Stat(ctx context.Context, node, p string) (Info, error) {
	out, err := d.exec(ctx, node, "sh", "-c", statScript, "sh", p)
	if err != nil {
		return Info{}, fmt.Errorf("failed to inspect in node %s: %w", node, err)
	}
	return parseStat(out)
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// parseStat parses statScript's line.
func parseStat(out string) (Info, error) {
	line := strings.TrimRight(out, "\n")
	kind, rest, _ := strings.Cut(line, " ")
	switch Kind(kind) {
	case KindNone, KindOther:
		if rest == "" && !strings.Contains(line, "\n") {
			return Info{Kind: Kind(kind)}, nil
		}
	case KindSymlink:
		if rest != "" && !strings.Contains(rest, "\n") {
			return Info{Kind: KindSymlink, Target: rest}, nil
		}
	case KindFile:
		if hexDigest.MatchString(rest) {
			return Info{Kind: KindFile, SHA256: rest}, nil
		}
	}
	return Info{}, errors.New("unexpected answer from the node: " + fmt.Sprintf("%q", truncate(line, 200)))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Remove implements Ops.
func (d Docker) Remove(ctx context.Context, node, p string) error {
	if _, err := d.exec(ctx, node, "rm", "-f", "--", p); err != nil {
		return fmt.Errorf("failed to remove in node %s: %w", node, err)
	}
	return nil
}

// Rename implements Ops.
func (d Docker) Rename(ctx context.Context, node, from, to string) error {
	if _, err := d.exec(ctx, node, "mv", "-f", "-T", "--", from, to); err != nil {
		return fmt.Errorf("failed to rename in node %s: %w", node, err)
	}
	return nil
}

// Link implements Ops: ln without -f, which never replaces.
func (d Docker) Link(ctx context.Context, node, from, to string) error {
	if _, err := d.exec(ctx, node, "ln", "-P", "-T", "--", from, to); err != nil {
		return fmt.Errorf("failed to link in node %s: %w", node, err)
	}
	return nil
}

// List implements Ops.
func (d Docker) List(ctx context.Context, node, dir string) ([]Entry, error) {
	out, err := d.exec(ctx, node, "sh", "-c", `[ -d "$1" ] || exit 0; `+listScript, "sh", dir)
	if err != nil {
		return nil, fmt.Errorf("failed to list in node %s: %w", node, err)
	}
	return parseList(out)
}
