// Area latency: how fast keys land. The recommended profile holds a synchronizer to the
// reference's convention (issue 11): the p99 of the time from a key Secret's creation to its
// key file being usable on every node is at most 1 s (--p99-sync-latency). The required profile
// only bounds each wait by --sync-timeout, which a synchronizer that polls every 10 s passes;
// this check tells it apart from one that watches.

package conformance

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/suites/internal/plant"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The latency sample: latencySecrets key Secrets created one after the other, one every
// latencySpacing, without waiting for each to land — steady arrivals a watch-driven
// synchronizer handles one by one, not a burst that measures its queue (the faults area's 200
// changes do that). With 25 samples the p99 (nearest rank) is the slowest Secret.
const (
	latencySecrets = 25
	latencySpacing = 200 * time.Millisecond
)

// DefaultP99SyncLatency is the recommended bound on the p99 sync latency (--p99-sync-latency).
const DefaultP99SyncLatency = time.Second

func (c *Context) p99SyncLatency() time.Duration {
	if c.P99SyncLatency <= 0 {
		return DefaultP99SyncLatency
	}
	return c.P99SyncLatency
}

// 22. Key Secrets land on every node fast: p99 ≤ 1 s (recommended).
func featureSyncLatency() Feature {
	var s *scope
	return Feature{
		Name: "key Secrets land on every node within the p99 sync latency", Area: AreaLatency,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
		},
		Assess: []Step{
			{Name: fmt.Sprintf("the p99 latency from creating a key Secret to its file on every node (%d Secrets, one every %s) is within --p99-sync-latency (default %s)",
				latencySecrets, latencySpacing, DefaultP99SyncLatency), Profile: ProfileRecommended, Fn: func(ctx context.Context, t T, c *Context) {
				keys := make([][]byte, latencySecrets)
				digests := make([]string, latencySecrets)
				for i := range keys {
					keys[i] = newKeyPEM(t)
					digests[i] = plant.Digest(mustNormalize(t, keys[i]))
				}
				nodes := c.nodes(ctx, t)
				w := c.startTreeWatch(ctx, t, min(latencySecrets*latencySpacing+c.syncTimeout()+time.Minute, nodedriver.MaxWatch))
				defer w.stop()
				if w.unsupported != "" {
					t.Skipf("the latency is measured by the node agent's tree watch: %s", w.unsupported)
				}
				created := make([]time.Time, latencySecrets)
				start := time.Now()
				for i, key := range keys {
					time.Sleep(time.Until(start.Add(time.Duration(i) * latencySpacing)))
					created[i] = time.Now()
					s.secrets.MustCreate(ctx, t, c.keySecret(fmt.Sprintf("lat-%02d", i), key))
				}
				seen := make([]map[string]time.Time, latencySecrets)
				all := func() bool {
					for i, d := range digests {
						seen[i] = w.seenAt(d)
						if len(seen[i]) < len(nodes) {
							return false
						}
					}
					return true
				}
				_ = wait.PollUntilContextTimeout(ctx, c.pollInterval(), c.syncTimeout(), true, func(context.Context) (bool, error) { return all(), nil })
				w.stop()
				all()
				for n, err := range w.errs {
					t.Fatalf("tree watch on node %s failed: %v", n, err)
				}
				lat := make([]time.Duration, latencySecrets)
				missing := 0
				for i := range lat {
					if len(seen[i]) < len(nodes) {
						lat[i] = time.Duration(math.MaxInt64) // not within the sync timeout
						missing++
						continue
					}
					for _, at := range seen[i] {
						lat[i] = max(lat[i], at.Sub(created[i]))
					}
				}
				p50, p99, worst := percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
				summary := fmt.Sprintf("p50 %s, p99 %s, max %s over %d key Secrets on %d nodes", fmtLatency(p50, c.syncTimeout()), fmtLatency(p99, c.syncTimeout()),
					fmtLatency(worst, c.syncTimeout()), latencySecrets, len(nodes))
				t.Logf("sync latency: %s", summary)
				if p99 > c.p99SyncLatency() {
					msg := fmt.Sprintf("p99 sync latency %s exceeds %s (%s)", fmtLatency(p99, c.syncTimeout()), c.p99SyncLatency(), summary)
					if missing > 0 {
						msg += fmt.Sprintf("; %d of %d keys were not on every node within the sync timeout %s (does the synchronizer poll instead of watching?)",
							missing, latencySecrets, c.syncTimeout())
					}
					t.Errorf("%s", msg)
				}
			}},
		},
	}
}

// percentile is the p-th percentile of ds by nearest rank (p in (0, 100]).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// fmtLatency prints d in milliseconds, or "> TIMEOUT" for a key that never landed.
func fmtLatency(d, timeout time.Duration) string {
	if d == time.Duration(math.MaxInt64) {
		return "> " + timeout.String()
	}
	return d.Round(time.Millisecond).String()
}
