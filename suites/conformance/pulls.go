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

// pullFailsEverywhere pulls ref on every node and requires CRI-O's no-key error: exactly
// MissingKeyMessage when the node's tree holds no key file, else that or NoUsableKeyMessage.
func (c *Context) pullFailsEverywhere(ctx context.Context, t T, ref string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		entries, err := c.Driver.ListKeys(ctx, n)
		if err != nil {
			t.Fatalf("node %s: failed to list keys tree: %v", n, err)
		}
		want := []string{MissingKeyMessage}
		for _, e := range entries {
			if e.Type == nodedriver.TypeFile {
				want = append(want, NoUsableKeyMessage)
				break
			}
		}
		err = c.Driver.PullImage(ctx, n, ref)
		if err == nil {
			t.Fatalf("node %s: pulling %s succeeded, want it to fail with %q", n, ref, want)
		}
		if !slices.ContainsFunc(want, func(m string) bool { return strings.Contains(err.Error(), m) }) {
			t.Fatalf("node %s: pulling %s failed with %v, want %q", n, ref, err, want)
		}
	}
}
