package labconfig

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Blocked returns the outside registries no lab node may reach (files/blocked-registries.txt):
// registry hosts, and "*.domain" for every host under domain, in the file's order.
func Blocked() ([]string, error) {
	raw, err := embedded.ReadFile("files/blocked-registries.txt")
	if err != nil {
		return nil, fmt.Errorf("failed to read the embedded blocked registries: %w", err)
	}
	return parseBlocked(raw)
}

// parseBlocked reads one entry a line; # starts a comment.
func parseBlocked(raw []byte) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		e := strings.TrimSpace(line)
		if e == "" {
			continue
		}
		if err := validBlocked(e); err != nil {
			return nil, fmt.Errorf("blocked-registries.txt line %d: %w", n, err)
		}
		if seen[e] {
			return nil, fmt.Errorf("blocked-registries.txt line %d: %q is listed twice", n, e)
		}
		seen[e] = true
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read blocked-registries.txt: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("blocked-registries.txt lists no registry")
	}
	return out, nil
}

// validBlocked accepts a lower-case DNS name, optionally "*."-prefixed: no port, path or scheme.
func validBlocked(e string) error {
	name := strings.TrimPrefix(e, "*.")
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a registry host (want host.domain or *.domain)", e)
	}
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a registry host (want host.domain or *.domain)", e)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a registry host (want host.domain or *.domain)", e)
			}
		}
	}
	return nil
}

// isWildcard reports whether a blocked entry is "*.domain" (registries.conf allows no location
// for it).
func isWildcard(e string) bool { return strings.HasPrefix(e, "*.") }
