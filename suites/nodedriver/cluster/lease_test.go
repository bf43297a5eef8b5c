package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kubetest"
)

// Two runs against one cluster (a real kube-apiserver): while run A renews the namespace's
// Lease, run B's Deploy refuses with ErrBusy and leaves A's DaemonSet alone; once A stops
// renewing (killed), run C takes over what A left, A's late Close removes nothing, and C's
// Close removes the DaemonSet and the Lease but not the shipped namespace.
func TestConcurrentRuns(t *testing.T) {
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultNamespace,
		Labels: map[string]string{labelPSA: PSALevel}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	timing := Options{LeaseDuration: 3 * time.Second, LeaseRenew: 300 * time.Millisecond}
	run := func(id string) Options {
		o := timing
		o.Labels = map[string]string{runIDLabel: id}
		return o
	}
	a := testDriver(cs, run("ra"))
	if err := a.claim(ctx); err != nil {
		t.Fatalf("run A: %v", err)
	}
	dsA, err := cs.AppsV1().DaemonSets(DefaultNamespace).Create(ctx, DaemonSet(Options{Namespace: DefaultNamespace, Image: "a", Labels: a.opts.Labels, KeysRoot: DefaultKeysRoot, CRISocket: DefaultCRISocket}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaseOf := func() (string, time.Time) {
		t.Helper()
		l, err := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *l.Spec.HolderIdentity, l.Spec.RenewTime.Time
	}
	_, renewed := leaseOf()
	time.Sleep(2 * timing.LeaseDuration) // longer than the Lease: A's renewals keep it

	o := run("rb")
	o.Client, o.Config, o.Image, o.ReadyTimeout = cs, srv.RESTConfig(), "b", 5*time.Second
	if d, err := Deploy(ctx, o); !errors.Is(err, ErrBusy) {
		if d != nil {
			_ = d.Close()
		}
		t.Fatalf("run B's Deploy while A runs: %v, want ErrBusy", err)
	} else {
		t.Logf("run B: %v", err)
	}
	holder, renewedLater := leaseOf()
	if holder != a.holder || !renewedLater.After(renewed) {
		t.Errorf("Lease held by %s renewed %s (was %s): want A's, renewed since", holder, renewedLater, renewed)
	}
	ds, err := cs.AppsV1().DaemonSets(DefaultNamespace).Get(ctx, AgentName, metav1.GetOptions{})
	if err != nil || ds.UID != dsA.UID || ds.Generation != dsA.Generation || ds.Labels[runIDLabel] != "ra" {
		t.Fatalf("A's DaemonSet after B's attempt: %v, %v; want untouched", ds, err)
	}

	a.stopRenew() // A is killed: no more renewals, no Close
	a.stopRenew = nil
	time.Sleep(timing.LeaseDuration + time.Second)
	c := testDriver(cs, run("rc"))
	if err := c.claim(ctx); err != nil {
		t.Fatalf("run C after A stopped renewing: %v", err)
	}
	if holder, _ := leaseOf(); holder != c.holder {
		t.Fatalf("Lease held by %s, want C (%s)", holder, c.holder)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("A's late Close: %v", err)
	}
	if _, err := cs.AppsV1().DaemonSets(DefaultNamespace).Get(ctx, AgentName, metav1.GetOptions{}); err != nil {
		t.Fatalf("A's late Close removed the DaemonSet C now owns: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("C's Close: %v", err)
	}
	if _, err := cs.AppsV1().DaemonSets(DefaultNamespace).Get(ctx, AgentName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet after C's Close: %v, want gone", err)
	}
	if _, err := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Lease after C's Close: %v, want gone", err)
	}
	if ns, err := cs.CoreV1().Namespaces().Get(ctx, DefaultNamespace, metav1.GetOptions{}); err != nil || ns.DeletionTimestamp != nil {
		t.Errorf("the shipped namespace after C's Close: %v, %v; want kept", ns, err)
	}
}
