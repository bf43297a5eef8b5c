package cluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ensureNamespace creates the agent's namespace unless it exists (waiting out one that an
// earlier run is still deleting). One an earlier keysync run created (labelled
// managed-by=keysync-suites) is adopted and removed by Close like a new one.
func (d *Driver) ensureNamespace(ctx context.Context) error {
	nss := d.opts.Client.CoreV1().Namespaces()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ns, err := nss.Get(ctx, d.opts.Namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("failed to get namespace %s: %w", d.opts.Namespace, err)
		}
		return ns.Status.Phase != corev1.NamespaceTerminating, nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", d.opts.Namespace, err)
	}
	if cur, err := nss.Get(ctx, d.opts.Namespace, metav1.GetOptions{}); err == nil {
		if cur.Labels[labelManaged] != managedBy {
			return nil // not ours: leave it when done
		}
		// Left by an earlier keysync run that was killed: adopt it (this run's labels) and
		// remove it when done.
		for k, v := range d.opts.Labels {
			cur.Labels[k] = v
		}
		if _, err := nss.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("failed to adopt namespace %s left by an earlier run: %w", d.opts.Namespace, err)
		}
		d.createdNS = true
		return nil
	}
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[labelManaged], labels[labelPSA] = managedBy, PSALevel
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.opts.Namespace, Labels: labels}}
	if _, err := nss.Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", d.opts.Namespace, err)
	}
	d.createdNS = true
	return nil
}

// PullSecretName is the agent pods' registry pull Secret (Options.PullSecret).
const PullSecretName = AgentName + "-pull"

// ensurePullSecret creates (or replaces) the agent's pull Secret when Options.PullSecret is set.
func (d *Driver) ensurePullSecret(ctx context.Context) error {
	if d.opts.PullSecret == nil {
		return nil
	}
	secrets := d.opts.Client.CoreV1().Secrets(d.opts.Namespace)
	if err := secrets.Delete(ctx, PullSecretName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to replace Secret %s/%s: %w", d.opts.Namespace, PullSecretName, err)
	}
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[labelManaged] = managedBy
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PullSecretName, Labels: labels},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: d.opts.PullSecret}}
	if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create the node agent's pull Secret %s/%s: %w", d.opts.Namespace, PullSecretName, err)
	}
	return nil
}
