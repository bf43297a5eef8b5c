package pullsecret

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ErrInvalidServer is wrapped by every ValidateServer error.
var ErrInvalidServer = errors.New("invalid registry server")

// ValidateServer checks that s is a registry host name as a dockerconfigjson "auths" key and
// a pull's image reference use it: host or host:port (an IPv6 address in brackets), lowercase,
// without a scheme (https://) or a path (/namespace).
func ValidateServer(s string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidServer, s, why) }
	switch {
	case s == "":
		return bad("empty")
	case strings.Contains(s, "://"):
		return bad("has a scheme; give the host name only, as in an image reference (us.icr.io)")
	case strings.Contains(s, "/"):
		return bad("has a path; give the host name only (the pull secret covers every repository of the host)")
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return bad("contains white space or a control character")
	}
	host := s
	if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
		h, port, err := net.SplitHostPort(s)
		if err != nil {
			return bad("want host or host:port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return bad("port must be a number from 1 to 65535")
		}
		host = h
		if strings.HasPrefix(s, "[") {
			if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
				return bad("want an IPv6 address between brackets")
			}
			return nil
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 || !dnsName.MatchString(host) {
		return bad("want a lowercase DNS name or an IP address")
	}
	return nil
}
