package leftovers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keysync-dev/keysync/internal/leftovers"
	"github.com/keysync-dev/keysync/internal/names"
)

// liveLease is run runID's agent Lease in namespace ns, renewed ago (held 60s).
func liveLease(ns, runID string, ago time.Duration) *coordinationv1.Lease {
	holder, secs := runID+"@h/1/x", int32(60)
	renewed := metav1.NewMicroTime(time.Now().Add(-ago))
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keysync-node-agent", Labels: labels(runID)},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renewed}}
}

func strs[T interface{ String() string }](xs []T) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

// Without --run-id the sweep leaves a live run (its Lease renewed within its duration) and
// what it made, and the shipped keysync-suites namespace, and says why; a dead run's objects
// go. Naming the live run removes it.
func TestSweepSkipsLiveRunsAndShipped(t *testing.T) {
	ctx := context.Background()
	shipped := ns("keysync-suites", map[string]string{names.LabelManagedBy: names.ManagedBy,
		"app.kubernetes.io/name": "keysync-conformance-runner", names.LabelRunID: "dead"})
	objs := []runtime.Object{
		shipped,
		ns(names.Namespace, nil),
		liveLease("keysync-suites", "live", time.Second),
		daemonSet("keysync-suites", "keysync-node-agent", labels("live")),
		secret(names.Namespace, "ks-live-key", labels("live-ab12")),
		secret(names.Namespace, "ks-dead-key", labels("dead")),
		liveLease("other", "dead", 10*time.Minute),
	}
	cs := fake.NewClientset(objs...)
	r, err := leftovers.SweepReport(ctx, cs, leftovers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	removed, skipped := strs(r.Removed), strs(r.Skipped)
	want := []string{"Secret image-key-synchronizer/ks-dead-key", "Lease other/keysync-node-agent"}
	slices.Sort(removed)
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, w := range []string{
		"DaemonSet keysync-suites/keysync-node-agent: run \"live\" is live: its Lease keysync-suites/keysync-node-agent was renewed",
		"Secret image-key-synchronizer/ks-live-key: run \"live\" is live",
		"Lease keysync-suites/keysync-node-agent: run \"live\" is live",
		"Namespace keysync-suites: shipped by suites/deploy/runner-rbac.yaml",
	} {
		if !slices.ContainsFunc(skipped, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("skipped %q lacks %q", skipped, w)
		}
	}
	if len(skipped) != 4 {
		t.Errorf("skipped %d objects, want 4: %q", len(skipped), skipped)
	}
	if !strings.Contains(strings.Join(skipped, "\n"), "--run-id live removes it anyway") {
		t.Errorf("skipped %q: want the --run-id hint", skipped)
	}
	if _, err := cs.AppsV1().DaemonSets("keysync-suites").Get(ctx, "keysync-node-agent", metav1.GetOptions{}); err != nil {
		t.Errorf("the live run's DaemonSet: %v", err)
	}

	r, err = leftovers.SweepReport(ctx, cs, leftovers.Options{RunID: "live"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strs(r.Removed); len(got) != 3 {
		t.Errorf("--run-id live removed %v, want its DaemonSet, Secret and Lease", got)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "keysync-suites", metav1.GetOptions{}); err != nil {
		t.Errorf("shipped namespace: %v", err)
	}
	if r, _ := leftovers.SweepReport(ctx, cs, leftovers.Options{RunID: "dead", DryRun: true}); len(r.Removed) != 0 || len(r.Skipped) != 1 {
		t.Errorf("--run-id dead (the shipped namespace's run-id label): removed %v skipped %v, want the namespace skipped", r.Removed, r.Skipped)
	}
}

// An identity that may not list a kind cluster-wide (the runner's role) is looked for in the
// fallback namespaces, and the report says so.
func TestSweepFallsBackWhenForbidden(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(
		ns(names.Namespace, nil), ns("keysync-suites", nil), ns("elsewhere", nil),
		secret(names.Namespace, "ks-dead-key", labels("dead")),
		secret("elsewhere", "ks-far", labels("dead")),
		liveLease("keysync-suites", "dead", time.Hour),
		pod("default", "run-pod", labels("dead")),
	)
	var listedEverywhere []string
	cs.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "" && a.GetResource().Resource != "namespaces" {
			listedEverywhere = append(listedEverywhere, a.GetResource().Resource)
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: a.GetResource().Resource}, "", errors.New("RBAC"))
		}
		return false, nil, nil
	})
	cs.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "elsewhere" {
			t.Errorf("listed Secrets in a namespace not in the fallback")
		}
		return false, nil, nil
	})
	fallback := []string{names.Namespace, "default", "keysync-suites"}
	r, err := leftovers.SweepReport(ctx, cs, leftovers.Options{Fallback: fallback})
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	got := strs(r.Removed)
	slices.Sort(got)
	want := []string{"Lease keysync-suites/keysync-node-agent", "Pod default/run-pod", "Secret image-key-synchronizer/ks-dead-key"}
	if !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if len(listedEverywhere) == 0 || len(r.Notes) != len(listedEverywhere) {
		t.Errorf("notes %q for forbidden lists %v: want one each", r.Notes, listedEverywhere)
	}
	for _, n := range r.Notes {
		if !strings.Contains(n, "(Forbidden): looked in image-key-synchronizer, default, keysync-suites only") {
			t.Errorf("note %q", n)
		}
	}
	if _, err := cs.CoreV1().Secrets("elsewhere").Get(ctx, "ks-far", metav1.GetOptions{}); err != nil {
		t.Errorf("Secret outside the fallback: %v", err)
	}
	// Without a fallback the Forbidden error is the sweep's.
	if _, err := leftovers.SweepReport(ctx, cs, leftovers.Options{DryRun: true}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("no fallback: %v, want Forbidden", err)
	}
}
