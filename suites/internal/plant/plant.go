// Package plant puts into a node's keys tree what a synchronizer did not write — a key another
// tool installed, a symlink someone made — and takes it away again, for the conformance
// suite's foreign area. It works where the runner writes to the node itself (lab capability
// plant): on this host with file operations (NODE_ACCESS=host, the node lab, see Host) and in a
// node container with docker cp and docker exec (NODE_ACCESS=docker, the kind lab, see Docker).
// The node agent stays read-only on the keys tree (least privilege): where the suites reach
// nodes only through agent pods, nothing is planted.
//
// A Planter remembers what it planted until it is undone, so that whatever ends a run (a
// feature's cleanup, or an interrupt through the run's guard) removes it: a symlink left in the
// tree fails every pull on the node.
package plant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
)

// Kind is what a path holds, as Stat sees it (symlinks not followed).
type Kind string

// The kinds.
const (
	KindNone    Kind = "none"
	KindFile    Kind = "file"
	KindSymlink Kind = "symlink"
	KindOther   Kind = "other"
)

// Info describes one path on a node, without following a symlink.
type Info struct {
	Kind Kind
	// Target is a symlink's target, as written in the link.
	Target string
	// SHA256 is a regular file's content digest (64 lowercase hex digits).
	SHA256 string
}

// Ops are one node access's file operations. Paths are absolute paths on the node; stage is a
// directory on the node, outside the keys tree and on its filesystem, where files are made
// before they are renamed into place (so the tree never holds a partial one).
type Ops interface {
	// WriteFile makes p a regular file holding data with mode, atomically (staged and renamed).
	WriteFile(ctx context.Context, node, p string, data []byte, mode fs.FileMode) error
	// Symlink makes p a symlink to target, atomically replacing what is there.
	Symlink(ctx context.Context, node, target, p string) error
	// Stat describes p (KindNone when nothing is there).
	Stat(ctx context.Context, node, p string) (Info, error)
	// Remove deletes p, not following a symlink; nothing there is not an error.
	Remove(ctx context.Context, node, p string) error
	// Rename moves from to to (in the same directory), replacing what is there.
	Rename(ctx context.Context, node, from, to string) error
	// Link makes to a hard link of from (not following a symlink); it fails when something
	// is at to: the one rename that never replaces.
	Link(ctx context.Context, node, from, to string) error
	// List lists directory dir's entries (nothing there is not an error).
	List(ctx context.Context, node, dir string) ([]Entry, error)
}

// Planted is one thing a Planter put on a node.
type Planted struct {
	Node, Path string
	// Kind is KindFile or KindSymlink; Want is its Info right after planting.
	Want Info
}

func (p Planted) String() string {
	if p.Want.Kind == KindSymlink {
		return fmt.Sprintf("node %s: symlink %s -> %s", p.Node, p.Path, p.Want.Target)
	}
	return fmt.Sprintf("node %s: file %s", p.Node, p.Path)
}

// Planter plants through Ops and remembers what it planted until it is undone. It is safe for
// concurrent use.
type Planter struct {
	ops Ops
	mu  sync.Mutex
	// planted is in planting order; UndoAll undoes it last first.
	planted []Planted
}

// New returns a Planter over ops.
func New(ops Ops) *Planter { return &Planter{ops: ops} }

// File plants a regular file holding data (mode 0600) at p on node. It is recorded before it
// is written, so that an interrupt during the write still removes it.
func (pl *Planter) File(ctx context.Context, node, p string, data []byte) (Planted, error) {
	if err := checkPath(p); err != nil {
		return Planted{}, err
	}
	rec := Planted{Node: node, Path: p, Want: Info{Kind: KindFile, SHA256: Digest(data)}}
	pl.remember(rec)
	if err := pl.ops.WriteFile(ctx, node, p, data, 0o600); err != nil {
		return Planted{}, fmt.Errorf("failed to plant file %s on node %s: %w", p, node, err)
	}
	return rec, nil
}

// Symlink plants a symlink to target at p on node, replacing what is there.
func (pl *Planter) Symlink(ctx context.Context, node, target, p string) (Planted, error) {
	if err := checkPath(p); err != nil {
		return Planted{}, err
	}
	if target == "" {
		return Planted{}, errors.New("a symlink needs a target")
	}
	rec := Planted{Node: node, Path: p, Want: Info{Kind: KindSymlink, Target: target}}
	pl.remember(rec)
	if err := pl.ops.Symlink(ctx, node, target, p); err != nil {
		return Planted{}, fmt.Errorf("failed to plant symlink %s on node %s: %w", p, node, err)
	}
	return rec, nil
}

// Stat describes p on node.
func (pl *Planter) Stat(ctx context.Context, node, p string) (Info, error) {
	if err := checkPath(p); err != nil {
		return Info{}, err
	}
	info, err := pl.ops.Stat(ctx, node, p)
	if err != nil {
		return Info{}, fmt.Errorf("failed to inspect %s on node %s: %w", p, node, err)
	}
	return info, nil
}

// Undo removes what was planted and forgets it. A planted file goes whatever it holds now (it
// is the run's, wherever it is). A planted symlink goes only while it is still a symlink: a
// regular file at its path is what the synchronizer put there in its place, and stays — also
// when the synchronizer replaces the link while it is being removed (see removeSymlink).
func (pl *Planter) Undo(ctx context.Context, rec Planted) error {
	if rec.Want.Kind == KindSymlink {
		info, err := pl.ops.Stat(ctx, rec.Node, rec.Path)
		if err != nil {
			return fmt.Errorf("failed to inspect planted %s: %w", rec, err)
		}
		if info.Kind == KindSymlink {
			if _, err := removeSymlink(ctx, pl.ops, rec.Node, rec.Path, func(string) bool { return true }); err != nil {
				return fmt.Errorf("failed to remove planted %s: %w", rec, err)
			}
		}
		pl.forget(rec)
		return nil
	}
	if err := pl.ops.Remove(ctx, rec.Node, rec.Path); err != nil {
		return fmt.Errorf("failed to remove planted %s: %w", rec, err)
	}
	pl.forget(rec)
	return nil
}

// asidePrefix begins the private names symlinks are moved to before they are removed.
const asidePrefix = ".keysync-plant-aside-"

// removeSymlink removes the symlink at p when ours accepts its target, without a window in
// which what replaced it is removed instead: p is renamed to a private name in its directory
// first (atomically taking whatever is there at that moment), and what was moved is looked at
// there. A symlink ours accepts is removed; anything else goes back to p with a hard link, which
// never replaces what may have landed at p since. When something did land there meanwhile, what
// was moved aside is an older version of it (only the synchronizer writes at p) and is removed
// too: a stale key must not stay in the tree under a private name. Only when the link fails and
// p is empty (or cannot be looked at) is the private name left, and the error names it. removed says whether
// a symlink was removed; nothing at p is not an error.
func removeSymlink(ctx context.Context, ops Ops, node, p string, ours func(target string) bool) (removed bool, err error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, fmt.Errorf("failed to name a private file: %w", err)
	}
	aside := path.Join(path.Dir(p), asidePrefix+hex.EncodeToString(b[:]))
	if err := ops.Rename(ctx, node, p, aside); err != nil {
		if info, serr := ops.Stat(ctx, node, p); serr == nil && info.Kind == KindNone {
			return false, nil // gone already
		}
		return false, fmt.Errorf("failed to move %s aside: %w", p, err)
	}
	info, err := ops.Stat(ctx, node, aside)
	if err == nil && info.Kind == KindSymlink && ours(info.Target) {
		if err := ops.Remove(ctx, node, aside); err != nil {
			return false, fmt.Errorf("failed to remove %s (moved aside from %s): %w", aside, p, err)
		}
		return true, nil
	}
	// Not ours (the synchronizer replaced the link just now), or unknown: put it back.
	if err := ops.Link(ctx, node, aside, p); err != nil {
		now, serr := ops.Stat(ctx, node, p)
		if serr != nil || now.Kind == KindNone {
			return false, fmt.Errorf("failed to put back %s, moved aside to %s (it is still there): %w", p, aside, err)
		}
		// Superseded while it was aside: the newer file at p stays, the older copy goes.
	}
	if err := ops.Remove(ctx, node, aside); err != nil {
		return false, fmt.Errorf("failed to remove %s, a second link of %s: %w", aside, p, err)
	}
	return false, nil
}

// UndoAll undoes everything still planted, last planted first; every undo runs, the errors
// are joined.
func (pl *Planter) UndoAll(ctx context.Context) error {
	pl.mu.Lock()
	recs := append([]Planted(nil), pl.planted...)
	pl.mu.Unlock()
	var errs []error
	for i := len(recs) - 1; i >= 0; i-- {
		if err := pl.Undo(ctx, recs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Pending lists what is planted and not yet undone, in planting order.
func (pl *Planter) Pending() []Planted {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]Planted(nil), pl.planted...)
}

func (pl *Planter) remember(rec Planted) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.forgetLocked(rec)
	pl.planted = append(pl.planted, rec)
}

func (pl *Planter) forget(rec Planted) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.forgetLocked(rec)
}

func (pl *Planter) forgetLocked(rec Planted) {
	for i, r := range pl.planted {
		if r.Node == rec.Node && r.Path == rec.Path {
			pl.planted = append(pl.planted[:i], pl.planted[i+1:]...)
			return
		}
	}
}

// checkPath accepts absolute, clean paths below the root only.
func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("refusing to plant at %q: want an absolute, clean path below /", p)
	}
	return nil
}

// Digest is data's SHA-256 as Info.SHA256 spells it.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
