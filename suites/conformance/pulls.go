package conformance

import (
	"context"
	"slices"
	"strings"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// pullEverywhere pulls ref on every node and fails the test on error.
func (c *Context) pullEverywhere(ctx context.Context, t T, ref string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		if err := c.Driver.PullImage(ctx, n, ref); err != nil {
			// What in the tree broke the pull comes first: one file CRI-O rejects fails them all.
			t.Fatalf("node %s: pulling %s failed%s: %v", n, ref, c.treeProblems(ctx, t), err)
		}
	}
}

// pullFailsEverywhere pulls ref on every node and requires CRI-O's no-key error
// (noKeyMessages).
func (c *Context) pullFailsEverywhere(ctx context.Context, t T, ref string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		want := c.noKeyMessages(ctx, t, n)
		err := c.Driver.PullImage(ctx, n, ref)
		if err == nil {
			t.Fatalf("node %s: pulling %s succeeded, want it to fail with %q", n, ref, want)
		}
		if !containsAny(err.Error(), want) {
			t.Fatalf("node %s: pulling %s failed with %v, want %q", n, ref, err, want)
		}
	}
}

// noKeyMessages are the errors CRI-O may give on node for an image whose key it lacks:
// exactly MissingKeyMessage when the node's tree holds no key file, else that or
// NoUsableKeyMessage (a tree with other keys, such as a cluster's own, says that none of them
// fits).
func (c *Context) noKeyMessages(ctx context.Context, t T, node string) []string {
	t.Helper()
	entries, err := c.Driver.ListKeys(ctx, node)
	if err != nil {
		t.Fatalf("node %s: failed to list keys tree: %v", node, err)
	}
	want := []string{MissingKeyMessage}
	for _, e := range entries {
		if e.Type == nodedriver.TypeFile {
			return append(want, NoUsableKeyMessage)
		}
	}
	return want
}

// containsAny reports whether s contains one of subs.
func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(m string) bool { return strings.Contains(s, m) })
}
