package conformance

import (
	"math"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/plant"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	never := time.Duration(math.MaxInt64)
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{name: "empty", p: 99, want: 0},
		{name: "one", in: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "p99 of 25 is the slowest", in: append(ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24), 900*time.Millisecond), p: 99, want: 900 * time.Millisecond},
		{name: "p99 of 200 drops the two slowest", in: append(append(ms(make([]int, 198)...), 5*time.Second), 6*time.Second), p: 99, want: 0},
		{name: "p50 unsorted", in: ms(30, 10, 20), p: 50, want: 20 * time.Millisecond},
		{name: "a key that never landed", in: []time.Duration{never, time.Millisecond}, p: 99, want: never},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

// TestSeenAt: a node's watch times are mapped onto the runner's clock through its ready line;
// only usable regular files with the digest count, the first version wins.
func TestSeenAt(t *testing.T) {
	d := plant.Digest([]byte("k"))
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(kind nodedriver.WatchKind, at time.Duration, typ nodedriver.EntryType, digest string, v nodedriver.Verdict) nodedriver.WatchEvent {
		return nodedriver.WatchEvent{Kind: kind, At: at, Entry: nodedriver.AuditEntry{Entry: nodedriver.Entry{Type: typ, Path: "synced/k"}, SHA256: digest, Verdict: v}}
	}
	w := &treeWatch{
		events: map[string][]nodedriver.WatchEvent{
			"a": {ev(nodedriver.WatchReady, 100*time.Millisecond, "", "", ""), ev(nodedriver.WatchVersion, 400*time.Millisecond, nodedriver.TypeFile, d, nodedriver.VerdictEmpty),
				ev(nodedriver.WatchVersion, 600*time.Millisecond, nodedriver.TypeFile, d, nodedriver.VerdictOK),
				ev(nodedriver.WatchVersion, 900*time.Millisecond, nodedriver.TypeFile, d, nodedriver.VerdictOK)},
			"b": {ev(nodedriver.WatchReady, 0, "", "", ""), ev(nodedriver.WatchVersion, time.Second, nodedriver.TypeSymlink, d, nodedriver.VerdictSymlink)},
			"c": {ev(nodedriver.WatchVersion, time.Second, nodedriver.TypeFile, d, nodedriver.VerdictOK)}, // never ready
		},
		ready: map[string]readyMark{"a": {local: t0, at: 100 * time.Millisecond}, "b": {local: t0}},
	}
	got := w.seenAt(d)
	if len(got) != 1 || !got["a"].Equal(t0.Add(500*time.Millisecond)) {
		t.Fatalf("seenAt = %v, want only node a at t0+500ms", got)
	}
	if got := w.seenAt(plant.Digest([]byte("other"))); len(got) != 0 {
		t.Fatalf("seenAt(other digest) = %v, want none", got)
	}
}

func TestP99SyncLatencyDefault(t *testing.T) {
	for _, tc := range []struct {
		set, want time.Duration
	}{{0, time.Second}, {-1, time.Second}, {3 * time.Second, 3 * time.Second}} {
		c := &Context{Lab: lab.Env{}, P99SyncLatency: tc.set}
		if got := c.p99SyncLatency(); got != tc.want {
			t.Errorf("P99SyncLatency %v: bound %v, want %v", tc.set, got, tc.want)
		}
	}
}
