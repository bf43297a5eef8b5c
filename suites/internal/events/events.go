// Package events waits for the Events a synchronizer records on Secrets.
package events

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Wait polls until an Event with reason is recorded on the object kind/ns/name and returns
// it. On timeout the error lists the reasons that were seen, so a wrong reason is obvious.
func Wait(ctx context.Context, cs kubernetes.Interface, kind, ns, name, reason string, timeout, interval time.Duration) (*corev1.Event, error) {
	sel := fields.Set{"involvedObject.name": name, "involvedObject.kind": kind}.AsSelector().String()
	var found *corev1.Event
	var seen []string
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, nil // transient; retried until the timeout
		}
		seen = seen[:0]
		for i := range list.Items {
			ev := &list.Items[i]
			if ev.Reason == reason {
				found = ev
				return true, nil
			}
			seen = append(seen, ev.Reason)
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to see Event %s on %s %s/%s within %s (seen reasons: %v): %w", reason, kind, ns, name, timeout, seen, err)
	}
	return found, nil
}
