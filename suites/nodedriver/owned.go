package nodedriver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// ErrNotOwned is wrapped by a guarded ReadKey that refuses a file: its bytes are not a key
// this run created, so they stay on the node.
var ErrNotOwned = errors.New("not a key this run created")

// OwnedKeys is the set of keys a run created (the bytes it put in Secrets, as the
// synchronizer writes them), held by SHA-256 only. It is safe for concurrent use; the zero
// value is empty.
type OwnedKeys struct {
	mu   sync.Mutex
	sums map[string]bool
}

// Add records data (a key file's exact bytes) as created by this run.
func (o *OwnedKeys) Add(data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sums == nil {
		o.sums = map[string]bool{}
	}
	o.sums[SHA256Hex(data)] = true
}

// Owns reports whether sum (lowercase hex SHA-256) is a key this run created (never for a nil
// set).
func (o *OwnedKeys) Owns(sum string) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return sum != "" && o.sums[sum]
}

// Guard wraps d so that no key bytes leave a node unless the run created that key: ReadKey
// first audits the node (on the node: only verdicts and SHA-256 travel) and reads the file only
// when its digest is one owned holds; the bytes read are checked against that digest again
// (and wiped on a mismatch: the file changed in between). AuditKeys never falls back to
// reading every file here: a driver or hook set that cannot audit on the node gets an error
// naming --hook-audit-keys. Every other operation is d's.
func Guard(d Driver, owned *OwnedKeys) Driver {
	return &guarded{d: d, owned: owned}
}

type guarded struct {
	d     Driver
	owned *OwnedKeys
}

var (
	_ Driver     = (*guarded)(nil)
	_ ArgsRunner = (*guarded)(nil)
	_ Auditor    = (*guarded)(nil)
	_ Watcher    = (*guarded)(nil)
)

func (g *guarded) Name() string                                     { return g.d.Name() }
func (g *guarded) Nodes(ctx context.Context) ([]string, error)      { return g.d.Nodes(ctx) }
func (g *guarded) PullImage(ctx context.Context, n, r string) error { return g.d.PullImage(ctx, n, r) }
func (g *guarded) RunImage(ctx context.Context, n, r string) (string, error) {
	return g.d.RunImage(ctx, n, r)
}
func (g *guarded) ListKeys(ctx context.Context, n string) ([]Entry, error) {
	return g.d.ListKeys(ctx, n)
}

// RunImageArgs implements ArgsRunner through d.
func (g *guarded) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	return RunImage(ctx, g.d, node, ref, args...)
}

// AuditKeys implements Auditor with d's audit on the node, never by reading the files here.
func (g *guarded) AuditKeys(ctx context.Context, node string) ([]AuditEntry, error) {
	a, ok := g.d.(Auditor)
	if !ok {
		return nil, fmt.Errorf("node %s: node driver %s cannot audit the keys tree on the node, and reading every file to judge it here would copy keys this run did not create (set --hook-audit-keys)", node, g.d.Name())
	}
	entries, err := a.AuditKeys(ctx, node)
	if errors.Is(err, ErrUnsupported) {
		return nil, fmt.Errorf("node %s: the keys tree must be audited on the node (set --hook-audit-keys, e.g. to `keysync-node-agent audit`): reading every file through --hook-read-key would copy keys this run did not create: %v", node, err)
	}
	return entries, err
}

// ReadKey implements Driver.ReadKey for keys this run created only (ErrNotOwned otherwise).
func (g *guarded) ReadKey(ctx context.Context, node, relpath string) ([]byte, error) {
	rel, err := CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	entries, err := g.AuditKeys(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("node %s: cannot tell whether %s is a key this run created: %w", node, rel, err)
	}
	var sum string
	found := false
	for _, e := range entries {
		if e.Path == rel {
			found, sum = true, e.SHA256
			if e.Type != TypeFile {
				return nil, fmt.Errorf("node %s: %s is a %s, not a regular file", node, rel, e.Type)
			}
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("node %s: %s: %w", node, rel, fs.ErrNotExist)
	}
	if !g.owned.Owns(sum) {
		return nil, fmt.Errorf("node %s: refusing to read %s: %w (the suites compare SHA-256 digests instead)", node, rel, ErrNotOwned)
	}
	data, err := g.d.ReadKey(ctx, node, rel)
	if err != nil {
		return nil, err
	}
	if SHA256Hex(data) != sum {
		clear(data)
		return nil, fmt.Errorf("node %s: %s changed while it was read: %w", node, rel, ErrNotOwned)
	}
	return data, nil
}
