package plant

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Entry is one directory entry on a node, as List sees it (symlinks not followed).
type Entry struct {
	Name string
	// Kind is KindFile, KindSymlink, KindOther, or KindDir.
	Kind Kind
	// Target is a symlink's target.
	Target string
}

// KindDir is a directory (List only; Stat says KindOther).
const KindDir Kind = "dir"

// Names the conformance suite plants under (suites/conformance, area foreign): the name
// prefix is "ks-<run ID>-" (a child run's ID is "<run ID>-<4 hex digits>").
const (
	// ForeignName is the short name of the key files planted in the keys tree.
	ForeignName = "foreign.pem"
	// SymlinkTargetName is the short name of the file beside the tree planted symlinks point to.
	SymlinkTargetName = "symlink-target.pem"
)

// stagedName matches what the accesses stage: Docker's ".keysync-plant-" and 16 hex digits,
// Host's (os.CreateTemp, os.MkdirTemp) ".keysync-plant-" and decimal digits.
var stagedName = regexp.MustCompile(`^\.keysync-plant-([0-9a-f]{16}|[0-9]+)$`)

// maxSweepDepth bounds how deep Sweep walks the keys tree.
const maxSweepDepth = 8

// SweepOptions say where a Sweep looks and what it removes.
type SweepOptions struct {
	// KeysRoot is the keys tree (CRI-O's decryption_keys_path) on the node; its parent is
	// the stage and where symlink targets are planted.
	KeysRoot string
	// RunID limits the sweep to one run (its ID or its children's "<ID>-xxxx"); empty: every
	// run.
	RunID string
	// DryRun lists what would be removed, and removes nothing.
	DryRun bool
}

// namePattern matches the names run (or every run, "") plants short under.
func namePattern(runID, short string) *regexp.Regexp {
	id := `[a-z0-9]([a-z0-9-]*[a-z0-9])?`
	if runID != "" {
		id = regexp.QuoteMeta(runID) + `(-[0-9a-f]{4})?`
	}
	return regexp.MustCompile(`^ks-` + id + `-` + regexp.QuoteMeta(short) + `$`)
}

// Sweep removes from node what a killed conformance run may have left planted there, and
// only that: key files named ks-<run>-foreign.pem in the keys tree, symlinks in the tree whose
// target is a ks-<run>-symlink-target.pem beside it (moved aside and checked first, as Undo
// does), that file itself, and the accesses' staged files in the stage (they live for moments
// only, and carry no run ID). It returns one line per removed (or, with DryRun, removable)
// path; every removal is tried, the errors are joined.
func Sweep(ctx context.Context, ops Ops, node string, o SweepOptions) ([]string, error) {
	if err := checkPath(o.KeysRoot); err != nil {
		return nil, err
	}
	foreign, target := namePattern(o.RunID, ForeignName), namePattern(o.RunID, SymlinkTargetName)
	stage := path.Dir(o.KeysRoot)
	ourTarget := func(dir, t string) bool {
		if !path.IsAbs(t) {
			t = path.Join(dir, t)
		}
		return path.Dir(t) == stage && target.MatchString(path.Base(t))
	}
	var done []string
	var errs []error
	remove := func(p, what string) {
		if !o.DryRun {
			if err := ops.Remove(ctx, node, p); err != nil {
				errs = append(errs, fmt.Errorf("failed to remove %s: %w", p, err))
				return
			}
		}
		done = append(done, fmt.Sprintf("node %s: %s %s", node, what, p))
	}
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		entries, err := ops.List(ctx, node, dir)
		if err != nil {
			return fmt.Errorf("failed to list %s on node %s: %w", dir, node, err)
		}
		for _, e := range entries {
			p := path.Join(dir, e.Name)
			switch {
			case e.Kind == KindFile && foreign.MatchString(e.Name):
				remove(p, "file")
			case e.Kind == KindSymlink && ourTarget(dir, e.Target):
				if o.DryRun {
					done = append(done, fmt.Sprintf("node %s: symlink %s -> %s", node, p, e.Target))
					continue
				}
				removed, err := removeSymlink(ctx, ops, node, p, func(t string) bool { return ourTarget(dir, t) })
				if err != nil {
					errs = append(errs, err)
				} else if removed {
					done = append(done, fmt.Sprintf("node %s: symlink %s -> %s", node, p, e.Target))
				}
			case e.Kind == KindDir && depth < maxSweepDepth:
				if err := walk(p, depth+1); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return nil
	}
	if err := walk(o.KeysRoot, 0); err != nil {
		return done, err
	}
	entries, err := ops.List(ctx, node, stage)
	if err != nil {
		return done, errors.Join(append(errs, fmt.Errorf("failed to list %s on node %s: %w", stage, node, err))...)
	}
	for _, e := range entries {
		p := path.Join(stage, e.Name)
		switch {
		case e.Kind == KindFile && target.MatchString(e.Name):
			remove(p, "file")
		case (e.Kind == KindFile || e.Kind == KindSymlink) && stagedName.MatchString(e.Name):
			remove(p, "staged")
		case e.Kind == KindDir && stagedName.MatchString(e.Name):
			// Host.Symlink's staging directory: a symlink named link, or nothing.
			inner, err := ops.List(ctx, node, p)
			if err != nil {
				errs = append(errs, fmt.Errorf("failed to list %s on node %s: %w", p, node, err))
				continue
			}
			if len(inner) > 1 || len(inner) == 1 && (inner[0].Name != "link" || inner[0].Kind != KindSymlink) {
				continue
			}
			if len(inner) == 1 {
				remove(path.Join(p, "link"), "staged")
			}
			remove(p, "staged")
		}
	}
	return done, errors.Join(errs...)
}

// listScript prints, for each entry of directory $1, its kind, name and symlink target (empty
// for others), each ended by NUL.
const listScript = `cd -- "$1" || exit 1
for f in * .[!.]* ..?*; do
  if [ -L "$f" ]; then printf 'symlink\0%s\0%s\0' "$f" "$(readlink -- "$f")"
  elif [ -d "$f" ]; then printf 'dir\0%s\0\0' "$f"
  elif [ -f "$f" ]; then printf 'file\0%s\0\0' "$f"
  elif [ -e "$f" ]; then printf 'other\0%s\0\0' "$f"
  fi
done`

// parseList parses listScript's output.
func parseList(out string) ([]Entry, error) {
	if out == "" {
		return nil, nil
	}
	fields := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	if len(fields)%3 != 0 {
		return nil, fmt.Errorf("unexpected listing from the node: %q", truncate(out, 200))
	}
	var entries []Entry
	for i := 0; i < len(fields); i += 3 {
		k := Kind(fields[i])
		switch k {
		case KindSymlink, KindDir, KindFile, KindOther:
		default:
			return nil, fmt.Errorf("unexpected listing from the node: %q", truncate(out, 200))
		}
		entries = append(entries, Entry{Kind: k, Name: fields[i+1], Target: fields[i+2]})
	}
	return entries, nil
}
