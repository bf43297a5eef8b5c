package conformance

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// podNamespace holds the suites' workload Pods.
const podNamespace = "default"

// The fixture program's network modes (fixtures/cmd/marker): -serve answers every TCP
// connection with the image's marker line; -probe connects to each host:port argument and
// prints "reached <addr>: <marker>", exiting 1 if one was not reached.
const (
	fixtureServeArg = "-serve"
	fixtureProbeArg = "-probe"
	fixturePort     = 8080
	// fixtureReached starts each line of a successful probe.
	fixtureReached = "reached "
)

// podFor is a Pod of image pinned to node, labelled as the suites' own, tolerating every
// taint (control-plane nodes included).
func (c *Context) podFor(short, node, image string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: c.nameFor(short), Namespace: podNamespace,
			Labels: map[string]string{secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRunID: c.RunID}},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:    []corev1.Container{{Name: "fixture", Image: image, Args: args}},
		},
	}
}

// createPod creates p and deletes it when the feature ends. On a lab whose registry requires
// credentials, a Pod without ImagePullSecrets (nil) gets the feature's pull Secret; an empty
// non-nil list means none on purpose.
func (c *Context) createPod(ctx context.Context, t T, s *scope, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if p.Spec.ImagePullSecrets == nil && c.Lab.Has(lab.CapRegistryAuth) {
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: c.scopePullSecret(ctx, t, s, p.Namespace)}}
	}
	pods := c.Client.CoreV1().Pods(p.Namespace)
	created, err := pods.Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create pod %s: %v", p.Name, err)
	}
	s.tr.Add("Pod "+p.Name, func(ctx context.Context) error {
		err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete pod %s: %w", p.Name, err)
		}
		return nil
	})
	return created
}

// waitPod polls pod until done says it is finished (or returns an error) or timeout passes,
// and returns its last state.
func (c *Context) waitPod(ctx context.Context, name string, timeout time.Duration, done func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, c.pollInterval(), timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(podNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("failed to get pod %s: %w", name, err)
		}
		last = p
		return done(p)
	})
	return last, err
}

// podLogs returns the fixture container's output.
func (c *Context) podLogs(ctx context.Context, name string) (string, error) {
	logs, err := c.Client.CoreV1().Pods(podNamespace).GetLogs(name, &corev1.PodLogOptions{Container: "fixture"}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("failed to read logs of pod %s: %w", name, err)
	}
	return string(logs), nil
}

// podEventMessages returns the messages of the Events recorded on pod.
func (c *Context) podEventMessages(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	list, err := c.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + pod.Name})
	if err != nil {
		return nil, fmt.Errorf("failed to list Events of pod %s: %w", pod.Name, err)
	}
	var msgs []string
	for _, e := range list.Items {
		if e.InvolvedObject.UID == pod.UID {
			msgs = append(msgs, e.Reason+": "+e.Message)
		}
	}
	return msgs, nil
}
