// Area isolation: nothing in the lab looks up or contacts an outside host.

package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/lab"
)

func featureIsolation() Feature {
	return Feature{
		Name: "nothing in the cluster looks up or contacts an outside host", Area: AreaIsolation,
		Setup: func(_ context.Context, t T, c *Context) {
			// Isolation is what the labs promise; a real cluster may well pull from outside.
			c.require(t, lab.CapCluster, lab.CapIsolated)
		},
		Assess: []Step{
			{Name: "pulls from outside registries are refused as blocked on every node, quickly", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				for _, n := range c.nodes(ctx, t) {
					for _, ref := range outsideRefs() {
						pctx, cancel := context.WithTimeout(ctx, 4*blockedQuickly)
						start := time.Now()
						err := c.Driver.PullImage(pctx, n, ref)
						took := time.Since(start)
						cancel()
						if what := checkBlockedPull(err, took); what != "" {
							t.Errorf("node %s: pulling %s %s", n, ref, what)
						} else {
							t.Logf("node %s: %s refused in %s", n, ref, took.Round(time.Millisecond))
						}
					}
				}
			}},
			{Name: "no CoreDNS forwards lookups outside", Profile: ProfileRequired, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				deps, err := c.Client.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatalf("failed to list Deployments: %v", err)
				}
				found := 0
				for _, d := range deps.Items {
					if d.Name != "coredns" && d.Spec.Template.Labels["k8s-app"] != "kube-dns" {
						continue
					}
					found++
					cm, err := c.Client.CoreV1().ConfigMaps(d.Namespace).Get(ctx, "coredns", metav1.GetOptions{})
					if err != nil {
						t.Errorf("CoreDNS Deployment %s/%s exists but its Corefile cannot be read: %v", d.Namespace, d.Name, err)
						continue
					}
					for _, fwd := range corefileForwards(cm.Data["Corefile"]) {
						t.Errorf("CoreDNS %s/%s forwards lookups: %q", d.Namespace, d.Name, fwd)
					}
				}
				if found == 0 {
					t.Logf("no CoreDNS Deployment: the DNS addon is skipped, nothing forwards lookups")
				}
			}},
		},
	}
}

// outsideRefs are images from outside registries that no node holds: a pull must be refused
// by registries.conf ("blocked") before any lookup.
func outsideRefs() []string {
	sum := sha256.Sum256([]byte("keysync-suites: an image no node has"))
	return []string{
		"docker.io/library/busybox:latest",
		"registry.k8s.io/pause:3.10.1@sha256:" + hex.EncodeToString(sum[:]),
	}
}

// networkErrorHints are what a pull error says when it tried the network.
var networkErrorHints = []string{"no such host", "i/o timeout", "dial tcp", "lookup ", "connection refused", "network is unreachable"}

// blockedQuickly is how long a refused pull may take (a lookup or connect would be slower).
const blockedQuickly = 15 * time.Second

// checkBlockedPull says what is wrong with a pull's outcome ("" when it was refused as blocked).
func checkBlockedPull(err error, took time.Duration) string {
	switch {
	case err == nil:
		return "succeeded"
	case slices.ContainsFunc(networkErrorHints, func(h string) bool { return strings.Contains(err.Error(), h) }):
		return fmt.Sprintf("tried the network: %v", err)
	case !strings.Contains(err.Error(), "blocked"):
		return fmt.Sprintf("failed without the registries.conf \"blocked\" error: %v", err)
	case took > blockedQuickly:
		return fmt.Sprintf("took %s (more than %s): %v", took.Round(time.Millisecond), blockedQuickly, err)
	}
	return ""
}

// corefileForwards returns the forward/proxy lines of a Corefile.
func corefileForwards(corefile string) []string {
	var out []string
	for _, line := range strings.Split(corefile, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "forward" || f[0] == "proxy") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}
