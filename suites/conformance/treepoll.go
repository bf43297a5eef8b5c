package conformance

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keysync-dev/keysync/suites/internal/keytree"
)

// watchTree audits every node's keys tree in a tight loop until the returned stop is called,
// which returns every problem seen meanwhile ("node N: PATH: REASON", first sighting order):
// a file CRI-O cannot use must never appear, not even for a moment.
func (c *Context) watchTree(ctx context.Context, t T) (stop func() []string) {
	t.Helper()
	nodes := c.nodes(ctx, t)
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, n := range nodes {
				problems, err := keytree.Audit(ctx, c.Driver, n, c.Lab.SyncSubdir)
				if err != nil {
					continue // a file renamed away mid-audit; the next pass sees the tree again
				}
				mu.Lock()
				for _, p := range problems {
					if s := fmt.Sprintf("node %s: %s: %s", n, p.Path, p.Reason); !slices.Contains(seen, s) {
						seen = append(seen, s)
					}
				}
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
