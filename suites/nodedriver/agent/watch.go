package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// watchMask is every change that can make a new version of an entry or take one away.
const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB |
	unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_DONT_FOLLOW

// treeWatch is one run of the watch operation: inotify on every directory of the keys tree.
type treeWatch struct {
	n     *Node
	fd    int
	f     *os.File
	start time.Time
	dirs  map[int32]string // watch descriptor → path relative to the root ("" for the root)
	last  map[string]nodedriver.AuditEntry
	out   io.Writer
}

// Watch records every version of every entry of the keys tree for d (nodedriver.OpWatch) and
// writes one watch line per event to w. The root must exist.
func (n *Node) Watch(ctx context.Context, d time.Duration, w io.Writer) error {
	if d <= 0 || d > nodedriver.MaxWatch {
		return fmt.Errorf("watch duration %s must be between 0 and %s", d, nodedriver.MaxWatch)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("failed to start inotify: %w", err)
	}
	// A non-blocking descriptor joins Go's poller, so reads honour deadlines.
	tw := &treeWatch{n: n, fd: fd, f: os.NewFile(uintptr(fd), "inotify"), start: time.Now(),
		dirs: map[int32]string{}, last: map[string]nodedriver.AuditEntry{}, out: w}
	defer tw.f.Close()
	if err := tw.addTree("", nodedriver.WatchInitial); err != nil {
		return err
	}
	if err := tw.emit(nodedriver.WatchEvent{Kind: nodedriver.WatchReady}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := tw.f.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("failed to set inotify deadline: %w", err)
	}
	// A cancelled context (the in-process transport's caller stopping early) ends the read
	// at once, not at the deadline.
	stopped := context.AfterFunc(ctx, func() { _ = tw.f.SetReadDeadline(time.Now()) })
	defer stopped()
	buf := make([]byte, 64<<10)
	for {
		k, err := tw.f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("failed to read inotify events: %w", err)
		}
		if err := tw.handle(buf[:k]); err != nil {
			return err
		}
	}
}

// addTree watches dir (relative) and every directory below it, reporting each entry as kind.
func (tw *treeWatch) addTree(rel string, kind nodedriver.WatchKind) error {
	abs := filepath.Join(tw.n.opts.KeysRoot, filepath.FromSlash(rel))
	wd, err := unix.InotifyAddWatch(tw.fd, abs, watchMask|unix.IN_ONLYDIR)
	if err != nil {
		if rel != "" && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)) {
			return nil // gone again
		}
		return fmt.Errorf("failed to watch %s: %w", abs, err)
	}
	tw.dirs[int32(wd)] = rel
	des, err := os.ReadDir(abs)
	if err != nil {
		if rel != "" && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("failed to read %s: %w", abs, err)
	}
	for _, de := range des {
		child := path(rel, de.Name())
		if err := tw.judge(child, kind); err != nil {
			return err
		}
		if de.IsDir() {
			if err := tw.addTree(child, kind); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle processes one read of inotify events.
func (tw *treeWatch) handle(buf []byte) error {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		name := strings.TrimRight(string(nameBytes), "\x00")
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			if err := tw.emit(nodedriver.WatchEvent{Kind: nodedriver.WatchOverflow}); err != nil {
				return err
			}
			continue
		}
		dir, ok := tw.dirs[ev.Wd]
		if !ok {
			continue
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(tw.dirs, ev.Wd)
			continue
		}
		if name == "" { // an event on the directory itself (IN_DELETE_SELF, IN_ATTRIB)
			continue
		}
		rel := path(dir, name)
		switch {
		case ev.Mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			if err := tw.removed(rel); err != nil {
				return err
			}
		case ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			if err := tw.judge(rel, nodedriver.WatchVersion); err != nil {
				return err
			}
			if err := tw.addTree(rel, nodedriver.WatchVersion); err != nil {
				return err
			}
		default:
			if err := tw.judge(rel, nodedriver.WatchVersion); err != nil {
				return err
			}
		}
	}
	return nil
}

// judge reports the current version of rel unless it equals the last one reported.
func (tw *treeWatch) judge(rel string, kind nodedriver.WatchKind) error {
	abs := filepath.Join(tw.n.opts.KeysRoot, filepath.FromSlash(rel))
	info, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone already: its removal event follows
	}
	if err != nil {
		return fmt.Errorf("failed to stat %s: %w", rel, err)
	}
	e := nodedriver.Entry{Path: rel, Mode: info.Mode().Perm(), Type: nodedriver.TypeOf(info.Mode())}
	var data []byte
	if e.Type == nodedriver.TypeFile {
		data, err = tw.n.ReadKey(context.Background(), rel)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			if errors.Is(err, errNotRegular) { // replaced by something else meanwhile
				return tw.judge(rel, kind)
			}
			return err
		}
	}
	a := nodedriver.Judge(e, data)
	if prev, ok := tw.last[rel]; ok && prev == a {
		return nil
	}
	tw.last[rel] = a
	return tw.emit(nodedriver.WatchEvent{Kind: kind, Entry: a})
}

// removed reports that rel (and whatever was below it) left the tree.
func (tw *treeWatch) removed(rel string) error {
	for p := range tw.last {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(tw.last, p)
		}
	}
	return tw.emit(nodedriver.WatchEvent{Kind: nodedriver.WatchRemoved, Entry: nodedriver.AuditEntry{Entry: nodedriver.Entry{Path: rel}}})
}

// emit writes one line; a reader that went away ends the watch.
func (tw *treeWatch) emit(e nodedriver.WatchEvent) error {
	e.At = time.Since(tw.start)
	return nodedriver.FormatWatchEvent(tw.out, e)
}

func path(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
