package lab

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RewriteSecrets is the KMS runbook's `kubectl get secrets -A -o json | kubectl replace -f -`:
// an update of each Secret as read stores it through the first provider of kube-apiserver's
// encryption config (kube-apiserver skips the write for values already stored that way). A
// Secret changed or deleted meanwhile was written through the new config anyway and is
// skipped. It returns how many Secrets it rewrote.
func RewriteSecrets(ctx context.Context, client kubernetes.Interface) (int, error) {
	list, err := client.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("failed to list Secrets: %w", err)
	}
	n := 0
	for i := range list.Items {
		s := &list.Items[i]
		if _, err := client.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue
			}
			return n, fmt.Errorf("failed to rewrite Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		n++
	}
	return n, nil
}
