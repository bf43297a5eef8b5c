package conformance

import (
	"context"
	"errors"
	"path"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/plant"
	"github.com/keysync-dev/keysync/suites/nodedriver/kind"
)

// newPlanter returns the planter of env's node access when the lab has capability plant: on
// this host (host) or in the node containers (docker), staging beside the keys tree (its parent
// directory: outside the walked tree, on its filesystem). Agent pods (pod) cannot plant: nil.
func newPlanter(env lab.Env) *plant.Planter {
	if !env.Has(lab.CapPlant) {
		return nil
	}
	switch env.Access() {
	case lab.AccessHost:
		return plant.New(plant.Host{Stage: path.Dir(nodeKeysRoot(env))})
	case lab.AccessDocker:
		return plant.New(plant.Docker{Stage: path.Dir(nodeKeysRoot(env))})
	}
	return nil
}

// nodeKeysRoot is CRI-O's decryption_keys_path as the planter sees it: KEYS_ROOT (a host path
// on the node lab), else the node image's default.
func nodeKeysRoot(env lab.Env) string {
	if env.KeysRoot != "" {
		return path.Clean(env.KeysRoot)
	}
	return kind.KeysRoot
}

// requirePlanter skips t unless the run can plant into the nodes' keys trees.
func (c *Context) requirePlanter(t T) {
	t.Helper()
	c.require(t, lab.CapPlant)
	if c.Planter == nil {
		t.Skipf("planting needs NODE_ACCESS %s or %s; this lab reaches its nodes by %s, whose node agent is read-only on the keys tree (least privilege)",
			lab.AccessHost, lab.AccessDocker, c.Lab.Access())
	}
}

// plantFile plants data at p (absolute on node) and registers its removal with s (the LIFO
// cleanup; the run's guard removes it too if the run is interrupted).
func (c *Context) plantFile(ctx context.Context, t T, s *scope, node, p string, data []byte) plant.Planted {
	t.Helper()
	rec, err := c.Planter.File(ctx, node, p, data)
	s.tr.Add("planted file "+p+" on node "+node, func(ctx context.Context) error {
		return c.Planter.Undo(ctx, plant.Planted{Node: node, Path: p, Want: plant.Info{Kind: plant.KindFile}})
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return rec
}

// plantSymlink plants a symlink to target at p (absolute on node) and registers its removal
// with s, as plantFile.
func (c *Context) plantSymlink(ctx context.Context, t T, s *scope, node, target, p string) plant.Planted {
	t.Helper()
	rec, err := c.Planter.Symlink(ctx, node, target, p)
	s.tr.Add("planted symlink "+p+" on node "+node, func(ctx context.Context) error {
		return c.Planter.Undo(ctx, plant.Planted{Node: node, Path: p, Want: plant.Info{Kind: plant.KindSymlink, Target: target}})
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return rec
}

// SweepPlanted removes from the nodes what killed runs left planted in their keys trees
// (plant.Sweep: files under the planter's names, symlinks to them, staged files), for run
// runID or every run, when env's lab can plant (else nothing: no run could have). nodes are
// the node containers' names (NODE_ACCESS docker); on this host (host) they are not needed.
// It returns one line per removed (with dryRun, removable) path.
func SweepPlanted(ctx context.Context, env lab.Env, nodes []string, runID string, dryRun bool) ([]string, error) {
	if !env.Has(lab.CapPlant) {
		return nil, nil
	}
	o := plant.SweepOptions{KeysRoot: nodeKeysRoot(env), RunID: runID, DryRun: dryRun}
	switch env.Access() {
	case lab.AccessHost:
		return plant.Sweep(ctx, plant.Host{Stage: path.Dir(o.KeysRoot)}, "", o)
	case lab.AccessDocker:
		var done []string
		var errs []error
		for _, n := range nodes {
			d, err := plant.Sweep(ctx, plant.Docker{Stage: path.Dir(o.KeysRoot)}, n, o)
			done = append(done, d...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		return done, errors.Join(errs...)
	}
	return nil, nil
}
