package nodedriver

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// parseLines runs parse on every non-blank line of data (a hook's or the agent's answer);
// an error names what was parsed and the line number.
func parseLines[T any](data []byte, what string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		v, err := parse(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", what, n, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", what, err)
	}
	return out, nil
}

// parseEntryHead parses the TYPE MODE SIZE fields that listing and audit lines share.
func parseEntryHead(typ, mode, size string) (EntryType, fs.FileMode, int64, error) {
	t, err := ParseEntryType(typ)
	if err != nil {
		return "", 0, 0, err
	}
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || m > 0o777 {
		return "", 0, 0, fmt.Errorf("mode %q is not octal permission bits", mode)
	}
	s, err := strconv.ParseInt(size, 10, 64)
	if err != nil || s < 0 {
		return "", 0, 0, fmt.Errorf("size %q is not a byte count", size)
	}
	return t, fs.FileMode(m), s, nil
}
