// Package podrun runs an image on a given node the way a workload runs it: as a Pod pinned to
// the node (nodeName, imagePullPolicy Always, restartPolicy Never, every taint tolerated),
// to completion, returning its logs. The node drivers of clusters (kind, cluster) use it for
// nodedriver.Driver's RunImage.
package podrun

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/names"
)

// Run runs ref with args (replacing the image's CMD; nil keeps it) on node in namespace and
// returns what the container printed. The Pod is deleted when Run returns. A pull that fails
// (ErrImagePull, ImagePullBackOff) ends the run at once with the kubelet's message.
func Run(ctx context.Context, client kubernetes.Interface, namespace, node, ref string, args []string) (string, error) {
	return RunWith(ctx, client, namespace, node, ref, args, Options{})
}

// Options are what a Pod of RunWith carries besides the image.
type Options struct {
	// Labels are extra labels on the Pod and its pull Secret (a run's keysync.dev/run-id).
	Labels map[string]string
	// DockerConfigJSON, when set, holds registry credentials (a .dockerconfigjson or
	// containers-auth.json document): it goes into a kubernetes.io/dockerconfigjson Secret the
	// Pod names in imagePullSecrets; the Secret is deleted with the Pod.
	DockerConfigJSON []byte
}

// RunWith is Run with labels and registry credentials (Options).
func RunWith(ctx context.Context, client kubernetes.Interface, namespace, node, ref string, args []string, o Options) (string, error) {
	pods := client.CoreV1().Pods(namespace)
	name := "keysync-run-" + rand.String(8)
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels[names.LabelManagedBy] = names.ManagedBy
	var pullSecrets []corev1.LocalObjectReference
	if o.DockerConfigJSON != nil {
		secrets := client.CoreV1().Secrets(namespace)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-pull", Labels: labels},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: o.DockerConfigJSON}}
		if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("failed to create the pull Secret for image %s: %w", ref, err)
		}
		defer func() {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer dcancel()
			_ = secrets.Delete(dctx, sec.Name, metav1.DeleteOptions{})
		}()
		pullSecrets = []corev1.LocalObjectReference{{Name: sec.Name}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: labels,
		},
		Spec: corev1.PodSpec{
			NodeName:         node,
			RestartPolicy:    corev1.RestartPolicyNever,
			ImagePullSecrets: pullSecrets,
			Tolerations:      []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            "run",
				Image:           ref,
				ImagePullPolicy: corev1.PullAlways,
				Args:            args,
			}},
		},
	}
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to create pod for image %s on node %s: %w", ref, node, err)
	}
	defer func() {
		// A fresh context: the run's may be done; the Pod must not outlive the call.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer dcancel()
		_ = pods.Delete(dctx, created.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}()
	var last *corev1.Pod
	for {
		p, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("failed to watch pod %s: %w", created.Name, err)
		}
		last = p
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			break
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return "", fmt.Errorf("failed to run image %s on node %s: %s: %s", ref, node, w.Reason, w.Message)
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("failed to run image %s on node %s: pod %s still %s: %w", ref, node, p.Name, p.Status.Phase, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	logs, err := pods.GetLogs(created.Name, &corev1.PodLogOptions{Container: "run"}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("failed to read logs of pod %s: %w", created.Name, err)
	}
	if last.Status.Phase == corev1.PodFailed {
		return string(logs), fmt.Errorf("image %s on node %s: pod %s failed", ref, node, created.Name)
	}
	return string(logs), nil
}
