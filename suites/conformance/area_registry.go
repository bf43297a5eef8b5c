// Area registry: registry credentials and image keys are two independent locks. A node needs
// the registry's credentials to fetch an encrypted image and the synchronized key to decrypt
// it; the registry's password can be rotated and pull Secrets follow with
// `keysync pullsecret --rotate` (internal/pullsecret), nothing restarted.

package conformance

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/pullsecret"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// RegistryAuthMessage is what a registry's refusal of a pull without (valid) credentials says
// in CRI-O's error (distribution's "authentication required").
const RegistryAuthMessage = "authentication required"

// requireAuthPuller skips unless the lab's registry requires credentials and the node driver
// can pull with and without them.
func (c *Context) requireAuthPuller(t T) {
	t.Helper()
	c.require(t, lab.CapRegistryAuth)
	if c.authPuller == nil {
		t.Skipf("the node driver cannot send registry credentials (command hooks); the labs' node agents can")
	}
}

// pullAs pulls ref on every node with authDoc (nil: no credentials) and checks the outcome:
// success when want is "", else an error containing want.
func (c *Context) pullAs(ctx context.Context, t T, ref string, authDoc []byte, want string) {
	t.Helper()
	for _, n := range c.nodes(ctx, t) {
		wants := []string{want}
		if want == MissingKeyMessage { // or that no key on the node fits (noKeyMessages)
			wants = c.noKeyMessages(ctx, t, n)
		}
		err := c.authPuller.PullImageAuth(ctx, n, ref, authDoc)
		switch {
		case want == "" && err != nil:
			t.Fatalf("node %s: pulling %s failed: %v", n, ref, err)
		case want != "" && err == nil:
			t.Fatalf("node %s: pulling %s succeeded, want it to fail with %q", n, ref, wants)
		case want != "" && !containsAny(err.Error(), wants):
			t.Fatalf("node %s: pulling %s failed with %v, want %q", n, ref, err, wants)
		}
	}
}

// authDoc reads the lab's auth file as it is now.
func (c *Context) authDoc(t T) []byte {
	t.Helper()
	data, err := os.ReadFile(c.Lab.RegistryAuthFile)
	if err != nil {
		t.Fatalf("failed to read REGISTRY_AUTH_FILE: %v", err)
	}
	return data
}

// secretAuthDoc is a pull Secret's .dockerconfigjson read back from the API server: the
// document the kubelet turns into the CRI pull's credentials.
func (c *Context) secretAuthDoc(ctx context.Context, t T, ns, name string) []byte {
	t.Helper()
	sec, err := c.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to read pull Secret %s/%s: %v", ns, name, err)
	}
	return sec.Data[corev1.DockerConfigJsonKey]
}

func featureRegistryLocks() Feature {
	var (
		s   *scope
		img Image
	)
	return Feature{
		Name: "registry credentials and the image key are independent locks: each alone fails, both pull", Area: AreaRegistry,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireAuthPuller(t)
			img = c.Fixtures.A
		},
		Assess: []Step{
			{Name: "credentials without the key: the pull fails with the missing-key message", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullAs(ctx, t, img.Ref, c.authDoc(t), MissingKeyMessage)
			}},
			{Name: "the key without credentials: the pull fails with the registry's authentication error", Fn: func(ctx context.Context, t T, c *Context) {
				c.syncKey(ctx, t, s, "reg-key", img)
				c.pullAs(ctx, t, img.Ref, nil, RegistryAuthMessage)
			}},
			{Name: "both: the pull works, under every host name of the registry", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullAs(ctx, t, img.Ref, c.authDoc(t), "")
				f, err := c.registryAuth()
				if err != nil {
					t.Fatalf("%v", err)
				}
				for _, h := range f.Hosts() {
					if h == c.Lab.Registry || !strings.HasPrefix(img.Ref, c.Lab.Registry+"/") {
						continue
					}
					c.pullAs(ctx, t, h+strings.TrimPrefix(img.Ref, c.Lab.Registry), c.authDoc(t), "")
				}
			}},
			{Name: "Pods: a pull Secret without the key, the key without a pull Secret, both", Fn: func(ctx context.Context, t T, c *Context) {
				c.require(t, lab.CapCluster)
				node := c.lastNode(ctx, t)
				noSecret := c.podFor("reg-nosecret", node, img.Ref, fixtureOnceArg)
				noSecret.Spec.ImagePullSecrets = []corev1.LocalObjectReference{} // none on purpose
				noSecret.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
				c.createPod(ctx, t, s, noSecret)
				c.waitPullError(ctx, t, noSecret.Name, RegistryAuthMessage)
				both := c.podFor("reg-both", node, img.Ref, fixtureOnceArg)
				both.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
				c.createPod(ctx, t, s, both)
				c.waitPodRuns(ctx, t, both.Name)
			}},
		},
	}
}

func featureRegistryRotation() Feature {
	var (
		s       *scope
		oldDoc  []byte
		secName string
	)
	return Feature{
		Name: "rotating the registry password: an old pull Secret fails on a fresh pull until keysync pullsecret --rotate", Area: AreaRegistry,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireAuthPuller(t)
			if c.Lab.RotateRegistryPasswordCmd == "" {
				t.Skipf("the lab env file has no ROTATE_REGISTRY_PASSWORD_CMD (the node and kind labs have one)")
			}
			oldDoc = c.authDoc(t)
			f, err := registryauth.Parse(oldDoc)
			if err != nil {
				t.Fatalf("%v", err)
			}
			sec, err := c.pullSecretFor(podNamespace, "reg-rotate", f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			secName = s.secrets.MustCreate(ctx, t, sec).Name
			c.pullAs(ctx, t, c.Fixtures.Plain, c.secretAuthDoc(ctx, t, podNamespace, secName), "")
		},
		Assess: []Step{
			{Name: "the registry's password changes: the old pull Secret fails on a fresh pull", Fn: func(ctx context.Context, t T, c *Context) {
				start := time.Now()
				if _, err := nodedriver.RunHook(ctx, 2*time.Minute, os.Stderr, "rotate the registry password",
					strings.Fields(c.Lab.RotateRegistryPasswordCmd)); err != nil {
					t.Fatalf("%v", err)
				}
				t.Logf("registry password rotated in %s", time.Since(start).Round(time.Millisecond))
				if string(c.authDoc(t)) == string(oldDoc) {
					t.Fatalf("ROTATE_REGISTRY_PASSWORD_CMD left REGISTRY_AUTH_FILE unchanged")
				}
				c.pullAs(ctx, t, c.Fixtures.Plain, c.secretAuthDoc(ctx, t, podNamespace, secName), RegistryAuthMessage)
			}},
			{Name: "pullsecret --rotate replaces the Secret in place: the fresh pull works again", Fn: func(ctx context.Context, t T, c *Context) {
				before, err := c.Client.CoreV1().Secrets(podNamespace).Get(ctx, secName, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("%v", err)
				}
				f, err := c.registryAuth()
				if err != nil {
					t.Fatalf("%v", err)
				}
				cred, err := f.Single()
				if err != nil {
					t.Fatalf("%v", err)
				}
				sec, err := pullsecret.Build(podNamespace, secName, f.Hosts(), cred.Password)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if _, err := pullsecret.Rotate(ctx, c.Client, sec); err != nil {
					t.Fatalf("pullsecret rotate: %v", err)
				}
				after, err := c.Client.CoreV1().Secrets(podNamespace).Get(ctx, secName, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("%v", err)
				}
				if after.UID != before.UID {
					t.Fatalf("Secret %s was replaced (uid %s → %s), want it updated in place", secName, before.UID, after.UID)
				}
				c.pullAs(ctx, t, c.Fixtures.Plain, after.Data[corev1.DockerConfigJsonKey], "")
				c.pullAs(ctx, t, c.Fixtures.Plain, oldDoc, RegistryAuthMessage)
			}},
			{Name: "a Pod with the rotated pull Secret runs", Fn: func(ctx context.Context, t T, c *Context) {
				c.require(t, lab.CapCluster)
				p := c.podFor("reg-rotated", c.lastNode(ctx, t), c.Fixtures.Plain, fixtureOnceArg)
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secName}}
				p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
				c.createPod(ctx, t, s, p)
				c.waitPodRuns(ctx, t, p.Name)
			}},
		},
	}
}

// waitPullError waits until pod name shows ErrImagePull/ImagePullBackOff with msg in its Events.
func (c *Context) waitPullError(ctx context.Context, t T, name, msg string) {
	t.Helper()
	var msgs []string
	_, err := c.waitPod(ctx, name, 2*c.syncTimeout(), func(p *corev1.Pod) (bool, error) {
		if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod %s reached %s, want a pull error %q", p.Name, p.Status.Phase, msg)
		}
		var err error
		if msgs, err = c.podEventMessages(ctx, p); err != nil {
			return false, err
		}
		for _, m := range msgs {
			if strings.Contains(m, msg) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s: Events %q, want %q: %v", name, msgs, msg, err)
	}
}

// waitPodRuns waits until pod name runs or has succeeded.
func (c *Context) waitPodRuns(ctx context.Context, t T, name string) {
	t.Helper()
	if _, err := c.waitPod(ctx, name, 2*c.syncTimeout(), func(p *corev1.Pod) (bool, error) {
		return p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded, nil
	}); err != nil {
		t.Fatalf("pod %s did not run: %v", name, err)
	}
}
