// Area pod: a Pod of an encrypted image fails to pull until its key is synced, then runs.

package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/fixtures"
)

func featurePod() Feature {
	var (
		s    *scope
		img  Image
		pod  *corev1.Pod
		node string
	)
	return Feature{
		Name: "a Pod of an encrypted image fails to pull until its key is synced, then runs", Area: AreaPod,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireCluster(t)
			img = c.pushFresh(ctx, t).A
			node = c.lastNode(ctx, t)
			p := c.podFor("pod", node, img.Ref, fixtureOnceArg)
			p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			pod = c.createPod(ctx, t, s, p)
		},
		Assess: []Step{
			{Name: "before the key is synced the Pod shows ErrImagePull/ImagePullBackOff with the missing-key message in its Events", Fn: func(ctx context.Context, t T, c *Context) {
				var reason string
				var msgs []string
				_, err := c.waitPod(ctx, pod.Name, 2*c.syncTimeout(), func(p *corev1.Pod) (bool, error) {
					if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded {
						return false, fmt.Errorf("pod %s reached %s without the key: the node decrypted %s without its private key", p.Name, p.Status.Phase, img.Ref)
					}
					for _, cs := range p.Status.ContainerStatuses {
						if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
							reason = w.Reason
						}
					}
					var err error
					if msgs, err = c.podEventMessages(ctx, p); err != nil {
						return false, err
					}
					return reason != "" && slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, MissingKeyMessage) }), nil
				})
				if err != nil {
					t.Fatalf("pod %s on node %s: waiting reason %q, Events %q: want ErrImagePull/ImagePullBackOff and %q: %v",
						pod.Name, node, reason, msgs, MissingKeyMessage, err)
				}
				t.Logf("pod %s on node %s: %s", pod.Name, node, reason)
			}},
			{Name: "after the key Secret is created the Pod runs and prints its marker", Fn: func(ctx context.Context, t T, c *Context) {
				c.syncKey(ctx, t, s, "pod-key", img)
				// The kubelet retries the pull with a back-off (10 s, doubling) that started
				// before the key was there.
				last, err := c.waitPod(ctx, pod.Name, 4*time.Minute, func(p *corev1.Pod) (bool, error) {
					if p.Status.Phase == corev1.PodFailed {
						return false, fmt.Errorf("pod %s failed: %+v", p.Name, p.Status.ContainerStatuses)
					}
					return p.Status.Phase == corev1.PodSucceeded, nil
				})
				if err != nil {
					phase := corev1.PodPhase("")
					if last != nil {
						phase = last.Status.Phase
					}
					t.Fatalf("pod %s on node %s did not complete after its key was synced (phase %q): %v", pod.Name, node, phase, err)
				}
				logs, err := c.podLogs(ctx, pod.Name)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if img.Marker != "" && !strings.Contains(logs, img.Marker) {
					t.Fatalf("pod %s printed %q, want it to contain %q", pod.Name, logs, img.Marker)
				}
			}},
		},
	}
}

// pushFresh pushes the fixtures anew under unique references (new layers, new keys) so that
// no node can hold any of them yet, and returns them. Their program is the one in the lab's
// plain fixture image, so no keysync checkout is needed.
func (c *Context) pushFresh(ctx context.Context, t T) Fixtures {
	t.Helper()
	if c.Lab.Registry == "" {
		t.Fatalf("the lab env file has no REGISTRY to push a fresh fixture to")
	}
	dir, err := os.MkdirTemp("", "keysync-suites-fixtures-")
	if err != nil {
		t.Fatalf("failed to create fixtures directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	program, err := fixtures.MarkerFromImage(ctx, c.Fixtures.Plain, fixtures.RegistrySystemContext(true), dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	marker := filepath.Join(dir, "marker")
	if err := os.WriteFile(marker, program, 0o755); err != nil {
		t.Fatalf("failed to write the marker program: %v", err)
	}
	out := filepath.Join(dir, "out")
	if _, err := fixtures.Push(ctx, fixtures.Options{Out: out, Registry: c.Lab.Registry, Prefix: "keysync-suites",
		RunID: c.RunID, InsecureSkipTLSVerify: true, MarkerBinary: marker, Logger: c.logger()}); err != nil {
		t.Fatalf("failed to push fresh fixtures to %s: %v", c.Lab.Registry, err)
	}
	fx, err := LoadFixtures(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return fx
}
