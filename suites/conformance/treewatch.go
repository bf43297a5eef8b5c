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
	// ready is, per node, when its ready line arrived (runner's clock) and its time on the
	// node's watch clock: it maps the node's event times onto the runner's (seenAt).
	ready map[string]readyMark
	errs  map[string]error
	// unsupported says why the lab's node driver cannot watch ("" when it can).
	unsupported string
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// startTreeWatch starts the watch on every node (for at most max) and returns once each is
// ready. A driver without a watch yields a treeWatch whose checks log that and pass.
func (c *Context) startTreeWatch(ctx context.Context, t T, max time.Duration) *treeWatch {
	t.Helper()
	w := &treeWatch{events: map[string][]nodedriver.WatchEvent{}, errs: map[string]error{}, ready: map[string]readyMark{}}
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
				received := time.Now()
				w.mu.Lock()
				w.events[n] = append(w.events[n], e)
				if e.Kind == nodedriver.WatchReady {
					w.ready[n] = readyMark{local: received, at: e.At}
				}
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

// readyMark pairs a node's ready line's watch time with when the runner received it.
type readyMark struct {
	local time.Time
	at    time.Duration
}

// seenAt returns, per node, when a regular file with digest (SHA-256 hex) that CRI-O can use
// first appeared in the tree, on the runner's clock: the node's watch time mapped through its
// ready line (the delay of that line makes the times later, never earlier). Nodes where it was
// not seen (yet) are absent.
func (w *treeWatch) seenAt(digest string) map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]time.Time{}
	for n, evs := range w.events {
		r, ok := w.ready[n]
		if !ok {
			continue
		}
		for _, e := range evs {
			if (e.Kind == nodedriver.WatchVersion || e.Kind == nodedriver.WatchInitial) && e.Entry.Type == nodedriver.TypeFile &&
				e.Entry.SHA256 == digest && e.Entry.Verdict == nodedriver.VerdictOK {
				out[n] = r.local.Add(e.At - r.at)
				break
			}
		}
	}
	return out
}
