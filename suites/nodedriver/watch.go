package nodedriver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OpWatch is the tree watch: `watch DURATION` records, for DURATION (a Go duration, at most
// MaxWatch), every version of every entry that appears in the keys tree, even briefly, with
// CRI-O's verdict on it (inotify on the node: a file's every create, write, close, chmod and
// rename into the tree is judged the moment it is seen), and streams one line per event:
//
//	ready MS                                       the watches are set (after the initial lines)
//	initial MS TYPE MODE SIZE SHA256 VERDICT PATH  an entry present when the watch started
//	version MS TYPE MODE SIZE SHA256 VERDICT PATH  a new version of an entry (audit fields)
//	removed MS PATH                                an entry left the tree (deleted or renamed away)
//	overflow MS                                    the kernel dropped events: the record has gaps
//
// MS is milliseconds since the watch started. Consecutive identical versions of a path are
// reported once. No key bytes are ever written, only verdicts and digests. The watch ends when
// DURATION has passed (exit 0) or when its output can no longer be written.
const OpWatch = "watch"

// MaxWatch bounds one watch.
const MaxWatch = 30 * time.Minute

// WatchKind is the first word of a watch line.
type WatchKind string

// The watch line kinds.
const (
	WatchReady    WatchKind = "ready"
	WatchInitial  WatchKind = "initial"
	WatchVersion  WatchKind = "version"
	WatchRemoved  WatchKind = "removed"
	WatchOverflow WatchKind = "overflow"
)

// WatchEvent is one line of a watch.
type WatchEvent struct {
	Kind WatchKind
	// At is the time since the watch started.
	At time.Duration
	// Entry is the version seen (initial, version) or holds only Path (removed).
	Entry AuditEntry
}

// FormatWatchEvent writes e as one watch line.
func FormatWatchEvent(w io.Writer, e WatchEvent) error {
	ms := e.At.Milliseconds()
	var err error
	switch e.Kind {
	case WatchReady, WatchOverflow:
		_, err = fmt.Fprintf(w, "%s %d\n", e.Kind, ms)
	case WatchRemoved:
		_, err = fmt.Fprintf(w, "%s %d %s\n", e.Kind, ms, e.Entry.Path)
	case WatchInitial, WatchVersion:
		var b bytes.Buffer
		if err = FormatAudit(&b, []AuditEntry{e.Entry}); err == nil {
			_, err = fmt.Fprintf(w, "%s %d %s", e.Kind, ms, b.String())
		}
	default:
		err = fmt.Errorf("unknown watch event kind %q", e.Kind)
	}
	if err != nil {
		return fmt.Errorf("failed to write watch event: %w", err)
	}
	return nil
}

// ParseWatchLine parses one watch line (without its line break).
func ParseWatchLine(line string) (WatchEvent, error) {
	f := strings.SplitN(strings.TrimRight(line, "\r"), " ", 3)
	if len(f) < 2 {
		return WatchEvent{}, fmt.Errorf("watch line %q: want \"KIND MS ...\"", line)
	}
	ms, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || ms < 0 {
		return WatchEvent{}, fmt.Errorf("watch line %q: %q is not milliseconds", line, f[1])
	}
	e := WatchEvent{Kind: WatchKind(f[0]), At: time.Duration(ms) * time.Millisecond}
	switch e.Kind {
	case WatchReady, WatchOverflow:
		if len(f) != 2 {
			return WatchEvent{}, fmt.Errorf("watch line %q: %s takes no fields", line, e.Kind)
		}
	case WatchRemoved:
		if len(f) != 3 {
			return WatchEvent{}, fmt.Errorf("watch line %q: removed needs a path", line)
		}
		p, err := CleanRelPath(f[2])
		if err != nil {
			return WatchEvent{}, fmt.Errorf("watch line %q: %w", line, err)
		}
		e.Entry.Path = p
	case WatchInitial, WatchVersion:
		if len(f) != 3 {
			return WatchEvent{}, fmt.Errorf("watch line %q: %s needs the audit fields", line, e.Kind)
		}
		a, err := parseAuditLine(f[2])
		if err != nil {
			return WatchEvent{}, fmt.Errorf("watch line %q: %w", line, err)
		}
		e.Entry = a
	default:
		return WatchEvent{}, fmt.Errorf("watch line %q: unknown kind %q", line, f[0])
	}
	return e, nil
}

// Watcher is implemented by drivers whose nodes run the tree watch (OpWatch). WatchKeys
// watches node's keys tree for at most d, calling fn for each event as it arrives, and
// returns when d has passed, ctx ends (cancel it to stop early: the events seen so far were
// delivered) or the watch fails. A driver that cannot watch answers ErrUnsupported.
type Watcher interface {
	WatchKeys(ctx context.Context, node string, d time.Duration, fn func(WatchEvent)) error
}

// WatchKeys implements Watcher with watch.
func (a *Agent) WatchKeys(ctx context.Context, node string, d time.Duration, fn func(WatchEvent)) error {
	if d <= 0 || d > MaxWatch {
		return fmt.Errorf("watch duration %s must be between 0 and %s", d, MaxWatch)
	}
	lw := &lineWriter{fn: func(line string) error {
		e, err := ParseWatchLine(line)
		if err != nil {
			return err
		}
		fn(e)
		return nil
	}}
	var errb bytes.Buffer
	code, err := a.Transport.RunAgent(ctx, node, []string{OpWatch, d.String()}, lw, &errb)
	lw.flush()
	msg := strings.TrimSpace(tail(errb.String(), 2048))
	switch {
	case lw.err != nil:
		return fmt.Errorf("node %s: node agent watch: %w", node, lw.err)
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("node %s: failed to run node agent watch: %w: %s", node, err, msg)
	case code != 0:
		if cerr, ok := ContractError(code, "node "+node+": agent watch", msg); ok {
			return cerr
		}
		return fmt.Errorf("node %s: node agent watch exited %d: %s", node, code, msg)
	}
	return nil
}

// lineWriter calls fn with every complete line written to it; the first error of fn is kept
// (and the rest of the stream ignored).
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(string) error
	err error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if w.err == nil && strings.TrimSpace(line) != "" {
			w.err = w.fn(line)
		}
	}
	return len(p), nil
}

// flush handles a last line without a line break.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 && w.err == nil {
		if line := strings.TrimSpace(string(w.buf)); line != "" {
			w.err = w.fn(line)
		}
	}
	w.buf = nil
}

// errWatchUnsupported is ErrUnsupported for drivers without a watch.
var errWatchUnsupported = fmt.Errorf("WatchKeys: the node driver has no tree watch: %w", ErrUnsupported)

// WatchKeys watches through d's Watcher, or answers ErrUnsupported.
func WatchKeys(ctx context.Context, d any, node string, dur time.Duration, fn func(WatchEvent)) error {
	if w, ok := d.(Watcher); ok {
		return w.WatchKeys(ctx, node, dur, fn)
	}
	return errWatchUnsupported
}

// WatchKeys implements Watcher through the base driver: no command hook watches.
func (h *hooked) WatchKeys(ctx context.Context, node string, d time.Duration, fn func(WatchEvent)) error {
	if h.c.Base == nil {
		return errWatchUnsupported
	}
	return WatchKeys(ctx, h.c.Base, node, d, fn)
}

// WatchKeys implements Watcher through the guarded driver: the watch returns verdicts and
// digests only, never key bytes.
func (g *guarded) WatchKeys(ctx context.Context, node string, d time.Duration, fn func(WatchEvent)) error {
	return WatchKeys(ctx, g.d, node, d, fn)
}
