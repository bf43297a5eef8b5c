package conformance

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckBlockedPull(t *testing.T) {
	blocked := errors.New(`rpc error: code = Unknown desc = registry docker.io is blocked in /etc/containers/registries.conf`)
	tests := []struct {
		name string
		err  error
		took time.Duration
		want string // substring of the complaint; "" = fine
	}{
		{"blocked quickly", blocked, 300 * time.Millisecond, ""},
		{"succeeded", nil, time.Second, "succeeded"},
		{"dns", errors.New("pinging container registry: dial tcp: lookup registry-1.docker.io: no such host"), time.Second, "tried the network"},
		{"timeout", errors.New("Get https://x/v2/: dial tcp 1.2.3.4:443: i/o timeout"), 30 * time.Second, "tried the network"},
		{"other error", errors.New("short-name resolution disabled"), time.Second, "without the registries.conf"},
		{"blocked slowly", blocked, time.Minute, "took 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkBlockedPull(tt.err, tt.took)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkBlockedPull = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCorefileForwards(t *testing.T) {
	tests := []struct {
		name, corefile string
		want           int
	}{
		{"kubeadm default", ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n    }\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n}\n", 1},
		{"no forward", ".:53 {\n    errors\n    kubernetes cluster.local\n    cache 30\n}\n", 0},
		{"old proxy", ".:53 {\n    proxy . 8.8.8.8\n}\n", 1},
		{"forward in a comment word", ".:53 {\n    # forwarding disabled\n}\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := corefileForwards(tt.corefile); len(got) != tt.want {
				t.Errorf("corefileForwards = %q, want %d lines", got, tt.want)
			}
		})
	}
}
