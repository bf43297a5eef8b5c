package conformance

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func (c *Context) nodes(ctx context.Context, t T) []string {
	t.Helper()
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		t.Fatalf("failed to list nodes: %v", err)
	}
	if len(nodes) == 0 {
		t.Fatalf("the node driver %s lists no nodes", c.Driver.Name())
	}
	return nodes
}

// lastNode is the node the single-node steps use (on kind a worker: names sort after
// "-control-plane").
func (c *Context) lastNode(ctx context.Context, t T) string {
	t.Helper()
	nodes := c.nodes(ctx, t)
	return nodes[len(nodes)-1]
}

// waitFile waits until every node has a file holding want and returns one entry per node.
func (c *Context) waitFile(ctx context.Context, want []byte) (map[string]nodedriver.Entry, error) {
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to list nodes: %w", err)
	}
	got := map[string]nodedriver.Entry{}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
		for _, n := range nodes {
			if _, ok := got[n]; ok {
				continue
			}
			files, err := keytree.Files(ctx, c.Driver, n, want)
			if err != nil {
				lastErr = err
				return false, nil
			}
			if len(files) > 0 {
				got[n] = files[0]
			}
		}
		return len(got) == len(nodes), nil
	})
	if err != nil {
		missing := []string{}
		for _, n := range nodes {
			if _, ok := got[n]; !ok {
				missing = append(missing, n)
			}
		}
		return nil, fmt.Errorf("key file did not appear on nodes %v within %s (last error: %v): %w", missing, c.syncTimeout(), lastErr, err)
	}
	return got, nil
}

// waitNoFile waits until no node has a file holding data.
func (c *Context) waitNoFile(ctx context.Context, data []byte) error {
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("failed to list nodes: %w", err)
	}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(ctx context.Context) (bool, error) {
		left = left[:0]
		for _, n := range nodes {
			files, err := keytree.Files(ctx, c.Driver, n, data)
			if err != nil {
				return false, nil
			}
			for _, f := range files {
				left = append(left, n+":"+f.Path)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("key files still present after %s: %v: %w", c.syncTimeout(), left, err)
	}
	return nil
}

func mustNormalize(t T, pemData []byte) []byte {
	t.Helper()
	norm, err := crikeys.Normalize(pemData)
	if err != nil {
		t.Fatalf("fixture key is not a private key CRI-O accepts: %v", err)
	}
	return norm
}

// snapshots summarises every node's tree ("node: TYPE MODE SIZE PATH" lines).
func (c *Context) snapshots(ctx context.Context, t T) ([]string, error) {
	var all []string
	for _, n := range c.nodes(ctx, t) {
		lines, err := keytree.Snapshot(ctx, c.Driver, n)
		if err != nil {
			return nil, fmt.Errorf("node %s: failed to snapshot keys tree: %w", n, err)
		}
		for _, l := range lines {
			all = append(all, n+": "+l)
		}
	}
	return all, nil
}
