// Area pod: a Pod of an encrypted image fails to pull until its key is synced, then runs.

package conformance

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/internal/freshimage"
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
			img = c.pushFresh(ctx, t)
			node = c.lastNode(ctx, t)
			p := c.podFor("pod", node, img.Ref, fixtureOnceArg)
			p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			pod = c.createPod(ctx, t, s, p)
		},
		Assess: []Step{
			{Name: "before the key is synced the Pod shows ErrImagePull/ImagePullBackOff with the missing-key message in its Events", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				var reason string
				var msgs []string
				want := c.noKeyMessages(ctx, t, node)
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
					return reason != "" && slices.ContainsFunc(msgs, func(m string) bool { return containsAny(m, want) }), nil
				})
				if err != nil {
					t.Fatalf("pod %s on node %s: waiting reason %q, Events %q: want ErrImagePull/ImagePullBackOff and %q: %v",
						pod.Name, node, reason, msgs, want, err)
				}
				t.Logf("pod %s on node %s: %s", pod.Name, node, reason)
			}},
			{Name: "after the key Secret is created the Pod runs and prints its marker", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
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

// freshRepo is the repository, under the lab's registry, of the images pushFresh makes.
const freshRepo = "keysync-suites/fresh"

// pushFresh pushes an encrypted fixture anew under a unique reference (new layers, a new key)
// so that no node can hold it yet, and returns it. Its program is the one in the lab's plain
// fixture image, so no keysync checkout is needed.
func (c *Context) pushFresh(ctx context.Context, t T) Image {
	t.Helper()
	if c.Lab.Registry == "" {
		t.Fatalf("the lab env file has no REGISTRY to push a fresh fixture to")
	}
	push, repo := cmp.Or(c.Lab.RegistryPush, c.Lab.Registry), freshRepo
	if c.Lab.RegistryPrefix != "" {
		repo = c.Lab.RegistryPrefix + "/" + repo
	}
	// The plain image is pulled from where this host pushes too.
	plain := c.Fixtures.Plain
	if rest, ok := strings.CutPrefix(plain, c.Lab.Registry+"/"); ok {
		plain = push + "/" + rest
	}
	img, err := freshimage.Push(ctx, freshimage.Options{Registry: push, Repo: repo, Tag: c.RunID,
		PlainRef: plain, Marker: names.FixtureMarkerPrefix + "fresh run=" + c.RunID,
		Insecure: c.Lab.RegistryCertDir == "", CertDir: c.Lab.RegistryCertDir, AuthFile: c.Lab.RegistryAuthFile})
	if err != nil {
		t.Fatalf("failed to push a fresh fixture to %s: %v", c.Lab.Registry, err)
	}
	c.logger().InfoContext(ctx, "pushed a fresh fixture", "ref", img.Ref)
	if rest, ok := strings.CutPrefix(img.Ref, push+"/"); ok {
		img.Ref = c.Lab.Registry + "/" + rest // as the nodes pull it
	}
	return Image{Name: "fresh", Ref: img.Ref, Marker: img.Marker, KeyFile: "(generated for " + img.Ref + ")", Key: img.Key}
}
