package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// claim makes the agent's namespace this run's before anything is created in it: the
// namespace is there (shipped by suites/deploy/runner-rbac.yaml, or created now when this
// identity may), this run holds its Lease (ErrBusy while another live run does: nothing is
// touched then), and a namespace an earlier keysync run created (labelled
// managed-by=keysync-suites, its run killed: its Lease expired) is adopted, so that Close
// removes it like one created now. A namespace someone else made (the shipped one, labelled
// ShippedLabel=ShippedName, even with the managed-by label) is never adopted nor removed, nor
// is one this identity may not update (Forbidden: used as it is).
func (d *Driver) claim(ctx context.Context) error {
	created, byKeysync, err := d.ensureNamespace(ctx)
	if err != nil {
		return err
	}
	nss := d.opts.Client.CoreV1().Namespaces()
	if err := d.acquireLease(ctx); err != nil {
		// A namespace created a moment ago goes again, unless another run holds it already.
		if created && !errors.Is(err, ErrBusy) {
			if derr := nss.Delete(context.WithoutCancel(ctx), d.opts.Namespace, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
				err = errors.Join(err, fmt.Errorf("failed to delete namespace %s: %w", d.opts.Namespace, derr))
			}
		}
		return err
	}
	d.startRenewing()
	d.createdNS = created
	if !byKeysync || created {
		return nil
	}
	// Left by an earlier keysync run that was killed: adopt it (this run's labels) and remove
	// it when done.
	cur, err := nss.Get(ctx, d.opts.Namespace, metav1.GetOptions{})
	if err == nil {
		for k, v := range d.opts.Labels {
			cur.Labels[k] = v
		}
		_, err = nss.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if apierrors.IsForbidden(err) {
		// This identity may not change namespaces (the runner's role): it could not have
		// created this one either. Use it as it is, and leave it.
		d.opts.Logger.InfoContext(ctx, "using the node agent's namespace as it is (this identity may not adopt it)",
			"namespace", d.opts.Namespace)
		return nil
	}
	if err != nil {
		held, _ := d.stillHeld(context.WithoutCancel(ctx))
		return errors.Join(fmt.Errorf("failed to adopt namespace %s left by an earlier run: %w", d.opts.Namespace, err),
			d.releaseLease(context.WithoutCancel(ctx), held))
	}
	d.createdNS = true
	return nil
}

// ensureNamespace makes sure the agent's namespace exists (waiting out one that an earlier run
// is still deleting): one that exists must let the agent's pods in (Pod Security); a missing
// one is created, labelled with the run's labels and PSALevel, when this identity may create
// namespaces (the runner's role may not: the manifest ships the namespace). created says it
// was created now, byKeysync that a keysync run created it (now or earlier).
func (d *Driver) ensureNamespace(ctx context.Context) (created, byKeysync bool, err error) {
	nss := d.opts.Client.CoreV1().Namespaces()
	var cur *corev1.Namespace
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ns, err := nss.Get(ctx, d.opts.Namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur = nil
			return true, nil
		case err != nil:
			return false, fmt.Errorf("failed to get namespace %s: %w", d.opts.Namespace, err)
		}
		cur = ns
		return ns.Status.Phase != corev1.NamespaceTerminating, nil
	})
	if err != nil {
		return false, false, fmt.Errorf("namespace %s: %w", d.opts.Namespace, err)
	}
	if cur != nil {
		if level, ok := cur.Labels[labelPSA]; ok && level != PSALevel {
			return false, false, fmt.Errorf("namespace %s enforces Pod Security level %q: the node agent's hostPath volumes need %q (label %s=%s%s)",
				d.opts.Namespace, level, PSALevel, labelPSA, PSALevel, d.manifestHint())
		}
		return false, madeByKeysync(cur.Labels), nil
	}
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[labelManaged], labels[labelPSA] = managedBy, PSALevel
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.opts.Namespace, Labels: labels}}
	_, err = nss.Create(ctx, ns, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err): // another run was quicker: its Lease decides
		return false, true, nil
	case apierrors.IsForbidden(err):
		return false, false, fmt.Errorf("namespace %s does not exist and this identity may not create it%s: %w", d.opts.Namespace, d.manifestHint(), err)
	case err != nil:
		return false, false, fmt.Errorf("failed to create namespace %s: %w", d.opts.Namespace, err)
	}
	return true, true, nil
}

// ShippedLabel and ShippedName mark what suites/deploy/runner-rbac.yaml ships (its
// keysync-suites namespace among them): a run never adopts or deletes such a namespace, even
// when it also carries the managed-by label.
const (
	ShippedLabel = labelName
	ShippedName  = "keysync-conformance-runner"
)

// madeByKeysync reports whether a namespace's labels say a keysync run created it (and not
// the shipped manifest).
func madeByKeysync(labels map[string]string) bool {
	return labels[labelManaged] == managedBy && labels[ShippedLabel] != ShippedName
}

// manifestHint says where the runner's namespace comes from (the default namespace only).
func (d *Driver) manifestHint() string {
	if d.opts.Namespace != DefaultNamespace {
		return ""
	}
	return "; apply suites/deploy/runner-rbac.yaml with an admin kubeconfig: it ships the namespace with its Pod Security level and the runner's Role there"
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
