package pullsecret

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

var (
	// ErrExists is returned by Create when the Secret already exists.
	ErrExists = errors.New("Secret already exists")
	// ErrNotFound is returned by Rotate when the Secret does not exist.
	ErrNotFound = errors.New("Secret does not exist")
)

// listPage bounds one List call while looking for references.
const listPage = 500

// References are the objects in the Secret's namespace that name it in imagePullSecrets.
type References struct {
	// Pods and ServiceAccounts are names, sorted.
	Pods, ServiceAccounts []string
}

// Create creates sec; an existing Secret of that name is left alone and ErrExists returned.
func Create(ctx context.Context, cs kubernetes.Interface, sec *corev1.Secret) error {
	_, err := cs.CoreV1().Secrets(sec.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%w: %s/%s (--rotate replaces its content)", ErrExists, sec.Namespace, sec.Name)
	}
	if err != nil {
		return fmt.Errorf("failed to create Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return nil
}

// Rotate replaces the data of the existing Secret sec.Namespace/sec.Name with sec's, keeping
// its metadata (labels, annotations, owners), and returns the pods and ServiceAccounts that
// reference it. A missing Secret (ErrNotFound), one of another type or an immutable one is
// left unchanged. Pods pick the new credentials up on their next image pull; nothing is
// restarted.
func Rotate(ctx context.Context, cs kubernetes.Interface, sec *corev1.Secret) (References, error) {
	secrets := cs.CoreV1().Secrets(sec.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := secrets.Get(ctx, sec.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: %s/%s (run without --rotate to create it)", ErrNotFound, sec.Namespace, sec.Name)
		}
		if err != nil {
			return fmt.Errorf("failed to get Secret %s/%s: %w", sec.Namespace, sec.Name, err)
		}
		if cur.Type != sec.Type {
			return fmt.Errorf("refusing to rotate Secret %s/%s: its type is %q, not %q", sec.Namespace, sec.Name, cur.Type, sec.Type)
		}
		if cur.Immutable != nil && *cur.Immutable {
			return fmt.Errorf("refusing to rotate Secret %s/%s: it is immutable (delete and recreate it)", sec.Namespace, sec.Name)
		}
		cur.Data = sec.Data
		cur.StringData = nil
		if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			// Still a conflict for RetryOnConflict: apierrors look through the wrapping.
			return fmt.Errorf("failed to update Secret %s/%s: %w", sec.Namespace, sec.Name, err)
		}
		return nil
	})
	if err != nil {
		return References{}, err
	}
	return FindReferences(ctx, cs, sec.Namespace, sec.Name)
}

// FindReferences lists the pods and ServiceAccounts in namespace whose imagePullSecrets name
// the Secret name.
func FindReferences(ctx context.Context, cs kubernetes.Interface, namespace, name string) (References, error) {
	var refs References
	opts := metav1.ListOptions{Limit: listPage}
	for {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return References{}, fmt.Errorf("failed to list pods in %s: %w", namespace, err)
		}
		for _, p := range pods.Items {
			if names(p.Spec.ImagePullSecrets, name) {
				refs.Pods = append(refs.Pods, p.Name)
			}
		}
		if opts.Continue = pods.Continue; opts.Continue == "" {
			break
		}
	}
	opts = metav1.ListOptions{Limit: listPage}
	for {
		sas, err := cs.CoreV1().ServiceAccounts(namespace).List(ctx, opts)
		if err != nil {
			return References{}, fmt.Errorf("failed to list ServiceAccounts in %s: %w", namespace, err)
		}
		for _, sa := range sas.Items {
			if names(sa.ImagePullSecrets, name) {
				refs.ServiceAccounts = append(refs.ServiceAccounts, sa.Name)
			}
		}
		if opts.Continue = sas.Continue; opts.Continue == "" {
			break
		}
	}
	slices.Sort(refs.Pods)
	slices.Sort(refs.ServiceAccounts)
	return refs, nil
}

func names(refs []corev1.LocalObjectReference, name string) bool {
	return slices.ContainsFunc(refs, func(r corev1.LocalObjectReference) bool { return r.Name == name })
}
