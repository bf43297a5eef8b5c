package doctor_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	doctorcmd "github.com/keysync-dev/keysync/internal/cli/doctor"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// namespaceController finalizes the agent namespace once it is being deleted, as
// kube-controller-manager's namespace controller would (kubetest runs kube-apiserver alone),
// while on is true.
func namespaceController(ctx context.Context, t *testing.T, cs kubernetes.Interface, on *atomic.Bool) {
	t.Helper()
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if !on.Load() {
				continue
			}
			ns, err := cs.CoreV1().Namespaces().Get(ctx, doctorcmd.AgentNamespace, metav1.GetOptions{})
			if err != nil || ns.DeletionTimestamp == nil {
				continue
			}
			ns.Spec.Finalizers = nil
			if _, err := cs.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("failed to finalize namespace %s: %v", ns.Name, err)
			}
		}
	}()
}

// gone waits until the agent namespace no longer exists (a case's leftover).
func gone(ctx context.Context, t *testing.T, cs kubernetes.Interface, on *atomic.Bool) {
	t.Helper()
	on.Store(true)
	// The namespace controller would delete its content too.
	_ = cs.AppsV1().DaemonSets(doctorcmd.AgentNamespace).Delete(ctx, cluster.AgentName, metav1.DeleteOptions{})
	_ = cs.CoreV1().Namespaces().Delete(ctx, doctorcmd.AgentNamespace, metav1.DeleteOptions{})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, doctorcmd.AgentNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
	}
	t.Fatalf("namespace %s still there", doctorcmd.AgentNamespace)
}

func TestWaitAgentGone(t *testing.T) {
	ctx := t.Context()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var controller atomic.Bool
	namespaceController(ctx, t, cs, &controller)
	ours := map[string]string{names.LabelManagedBy: names.ManagedBy}
	createNS := func(t *testing.T, labels map[string]string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: doctorcmd.AgentNamespace, Labels: labels}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deleteNS := func(t *testing.T) {
		t.Helper()
		if err := cs.CoreV1().Namespaces().Delete(ctx, doctorcmd.AgentNamespace, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createDS := func(t *testing.T) {
		t.Helper()
		sel := map[string]string{"app": "a"}
		if _, err := cs.AppsV1().DaemonSets(doctorcmd.AgentNamespace).Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: cluster.AgentName},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "a"}}}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T)
		controller bool   // the namespace controller finalizes deleted namespaces
		err        string // substring of the error; "" none
		minWait    time.Duration
	}{
		{name: "nothing there", setup: func(*testing.T) {}},
		{name: "keysync's namespace deleted and finalized", controller: true,
			setup: func(t *testing.T) { createNS(t, ours); createDS(t); deleteNS(t) }},
		{name: "keysync's namespace finalized late: doctor waits for it", controller: true,
			setup: func(t *testing.T) {
				createNS(t, ours)
				deleteNS(t)
				controller.Store(false)
				time.AfterFunc(time.Second, func() { controller.Store(true) })
			},
			minWait: 900 * time.Millisecond},
		{name: "keysync's namespace stuck terminating: timeout says what is left",
			setup: func(t *testing.T) { createNS(t, ours); deleteNS(t) },
			err:   "doctor's node agent not gone within 2s (namespace keysync-doctor still there, phase Terminating; finalizers kubernetes): it may still go away by itself"},
		{name: "keysync's namespace not deleted at all",
			setup: func(t *testing.T) { createNS(t, ours) },
			err:   "namespace keysync-doctor still there, phase Active, not being deleted"},
		{name: "someone else's namespace: only the DaemonSet had to go",
			setup: func(t *testing.T) { createNS(t, map[string]string{"team": "x"}) }},
		{name: "someone else's namespace with the DaemonSet still there",
			setup: func(t *testing.T) { createNS(t, nil); createDS(t) },
			err:   "DaemonSet keysync-doctor/" + cluster.AgentName + " still there"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gone(ctx, t, cs, &controller)
			controller.Store(tc.controller)
			tc.setup(t)
			start := time.Now()
			err := doctorcmd.WaitAgentGone(ctx, cs, 2*time.Second)
			took := time.Since(start)
			t.Logf("took %s, err %v", took, err)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err = %v, want one containing %q", err, tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), "keysync conformance cleanup"):
				t.Errorf("err = %v does not say how to remove it", err)
			}
			if took < tc.minWait {
				t.Errorf("returned after %s, before the namespace was gone (want ≥ %s)", took, tc.minWait)
			}
			if tc.err == "" && tc.controller {
				if _, err := cs.CoreV1().Namespaces().Get(ctx, doctorcmd.AgentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("namespace still there after WaitAgentGone returned: %v", err)
				}
			}
		})
	}
	gone(ctx, t, cs, &controller)
}
