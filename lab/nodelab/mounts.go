package nodelab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
)

// mountsUnder lists the mount points at or below dir in a mountinfo document, deepest first.
func mountsUnder(mountinfo io.Reader, dir string) ([]string, error) {
	dir = strings.TrimRight(dir, "/")
	var mounts []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if (mp == dir || strings.HasPrefix(mp, dir+"/")) && !seen[mp] {
			seen[mp] = true
			mounts = append(mounts, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read mountinfo: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool {
		if a, b := strings.Count(mounts[i], "/"), strings.Count(mounts[j], "/"); a != b {
			return a > b
		}
		return mounts[i] > mounts[j]
	})
	return mounts, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts (lazily) every mount at or below dir, deepest first, repeating while
// stacked mounts remain. It returns how many it unmounted.
func unmountUnder(dir string) (int, error) {
	total := 0
	for round := 0; round < 5; round++ {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return total, fmt.Errorf("failed to open mountinfo: %w", err)
		}
		mounts, err := mountsUnder(f, dir)
		f.Close()
		if err != nil {
			return total, err
		}
		if len(mounts) == 0 {
			return total, nil
		}
		var errs []error
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("failed to unmount %s: %w", m, err))
				continue
			}
			total++
		}
		if len(errs) > 0 {
			return total, errors.Join(errs...)
		}
	}
	return total, fmt.Errorf("failed to unmount everything under %s after 5 rounds", dir)
}
