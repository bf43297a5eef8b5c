package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// treeWatch is the node agent's tree watch (nodedriver.OpWatch) running on every node around
// a step: "nothing CRI-O cannot read ever appears in the tree, not even for a moment" and "a
// synced key is never removed" are judged from what it saw.
type treeWatch struct {
	mu     sync.Mutex
	events map[string][]nodedriver.WatchEvent
	errs   map[string]error
	// unsupported says why the lab's node driver cannot watch ("" when it can).
	unsupported string
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// startTreeWatch starts the watch on every node (for at most max) and returns once each is
// ready. A driver without a watch yields a treeWatch whose checks log that and pass.
func (c *Context) startTreeWatch(ctx context.Context, t T, max time.Duration) *treeWatch {
	t.Helper()
	w := &treeWatch{events: map[string][]nodedriver.WatchEvent{}, errs: map[string]error{}}
	if _, ok := c.Driver.(nodedriver.Watcher); !ok {
		w.unsupported = fmt.Sprintf("node driver %s has no tree watch", c.Driver.Name())
		t.Logf("tree watch: %s; transient files are not checked", w.unsupported)
		return w
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	nodes := c.nodes(ctx, t)
	ready := make(chan string, len(nodes))
	for _, n := range nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			once := sync.OnceFunc(func() { ready <- n })
			err := nodedriver.WatchKeys(wctx, c.Driver, n, max, func(e nodedriver.WatchEvent) {
				w.mu.Lock()
				w.events[n] = append(w.events[n], e)
				w.mu.Unlock()
				if e.Kind == nodedriver.WatchReady {
					once()
				}
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				w.mu.Lock()
				w.errs[n] = err
				w.mu.Unlock()
			}
			once()
		}()
	}
	deadline := time.After(time.Minute)
	for range nodes {
		select {
		case <-ready:
		case <-deadline:
			w.stop()
			t.Fatalf("tree watch: not ready on every node within a minute")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, err := range w.errs {
		if errors.Is(err, nodedriver.ErrUnsupported) {
			w.unsupported = fmt.Sprintf("node %s: %v", n, err)
			delete(w.errs, n)
		}
	}
	if w.unsupported != "" {
		t.Logf("tree watch: %s; transient files are not checked", w.unsupported)
	}
	return w
}

// stop lets the last events arrive, ends the watch and waits for it (idempotent).
func (w *treeWatch) stop() {
	if w.cancel == nil {
		return
	}
	time.Sleep(500 * time.Millisecond)
	w.cancel()
	w.wg.Wait()
	w.cancel = nil
}

// checkOnlyUsableKeys stops the watch and fails t for every version of an entry that CRI-O
// could not use (a partial, empty, public, text or password-protected file, a symlink, ...)
// and for a watch that failed or lost events.
func (w *treeWatch) checkOnlyUsableKeys(t T) {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, err := range w.errs {
		t.Errorf("tree watch on node %s failed: %v", n, err)
	}
	versions := 0
	for n, evs := range w.events {
		for _, e := range evs {
			switch e.Kind {
			case nodedriver.WatchOverflow:
				t.Errorf("node %s: the tree watch lost events at %s (inotify queue overflow): transient files may have gone unseen", n, e.At)
			case nodedriver.WatchInitial, nodedriver.WatchVersion:
				versions++
				if e.Entry.Verdict != nodedriver.VerdictOK {
					t.Errorf("node %s: at %s the keys tree held %s (%s %04o, %d bytes): %s — CRI-O fails every pull while it is there",
						n, e.At, e.Entry.Path, e.Entry.Type, e.Entry.Mode.Perm(), e.Entry.Size, e.Entry.Verdict)
				}
			}
		}
	}
	if w.unsupported == "" {
		t.Logf("tree watch: %d versions of entries seen on %d nodes, each judged by CRI-O's rules", versions, len(w.events))
	}
}

// checkNotRemoved stops the watch and fails t when a file holding one of digests (SHA-256 hex)
// was removed, or replaced by other bytes, while it watched.
func (w *treeWatch) checkNotRemoved(t T, what string, digests ...string) {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, evs := range w.events {
		holds := map[string]string{} // path → digest, for the watched digests
		for _, e := range evs {
			switch e.Kind {
			case nodedriver.WatchInitial, nodedriver.WatchVersion:
				if slices.Contains(digests, e.Entry.SHA256) {
					holds[e.Entry.Path] = e.Entry.SHA256
				} else if _, ok := holds[e.Entry.Path]; ok {
					t.Errorf("node %s: at %s %s (%s) was overwritten with other bytes", n, e.At, e.Entry.Path, what)
					delete(holds, e.Entry.Path)
				}
			case nodedriver.WatchRemoved:
				for p := range holds {
					if p == e.Entry.Path || strings.HasPrefix(p, e.Entry.Path+"/") {
						t.Errorf("node %s: at %s %s (%s) was removed", n, e.At, p, what)
						delete(holds, p)
					}
				}
			}
		}
	}
}
