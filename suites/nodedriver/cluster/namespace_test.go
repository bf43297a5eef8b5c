package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const runIDLabel = "keysync.dev/run-id"

// lease is a Lease in the agent's namespace held by holder (run runID), renewed ago.
func lease(holder, runID string, ago time.Duration) *coordinationv1.Lease {
	secs := int32(DefaultLeaseDuration / time.Second)
	renewed := metav1.NewMicroTime(time.Now().Add(-ago))
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: DefaultNamespace,
		Labels: map[string]string{labelManaged: managedBy, runIDLabel: runID}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renewed}}
}

// testDriver is a Driver of run r2 (or o.Labels') on cs (o's other fields kept), as Deploy makes it before
// claim, renewing its Lease hourly unless o says otherwise.
func testDriver(cs kubernetes.Interface, o Options) *Driver {
	o.Client, o.Namespace = cs, DefaultNamespace
	if o.Labels == nil {
		o.Labels = map[string]string{runIDLabel: "r2"}
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.LeaseRenew == 0 {
		o.LeaseRenew = time.Hour
	}
	o.Logger = slog.New(slog.DiscardHandler)
	return &Driver{opts: o, holder: holderIdentity(o.Labels)}
}

func namespace(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultNamespace, Labels: labels}}
}

// claim uses the shipped namespace as it is, creates a missing one when it may (and says to
// apply the manifest when it may not), adopts what a killed run left, and refuses while
// another run holds the namespace's Lease, touching nothing.
func TestClaim(t *testing.T) {
	shipped := map[string]string{labelPSA: PSALevel, "app.kubernetes.io/name": "keysync-conformance-runner"}
	leftByR1 := map[string]string{labelManaged: managedBy, runIDLabel: "r1", labelPSA: PSALevel}
	tests := []struct {
		name          string
		objects       []runtime.Object
		forbidCreate  bool
		forbidUpdate  bool
		wantErr       string // "" for none
		wantBusy      bool
		wantCreatedNS bool   // Close removes the namespace
		wantNSRunID   string // the namespace's run-id label afterwards ("" when none)
		wantHolder    string // the Lease holder's run ID afterwards ("" when no Lease)
	}{
		{name: "shipped namespace: used, never removed", objects: []runtime.Object{namespace(shipped)},
			wantHolder: "r2"},
		{name: "shipped namespace with the managed-by label: used, never adopted nor removed",
			objects: []runtime.Object{namespace(map[string]string{labelPSA: PSALevel, ShippedLabel: ShippedName, labelManaged: managedBy}),
				lease("r1@h/1/x", "r1", 2*DefaultLeaseDuration)},
			wantHolder: "r2"},
		{name: "left by a killed run, may not update namespaces: used as it is, not removed",
			objects: []runtime.Object{namespace(leftByR1), lease("r1@h/1/x", "r1", 2*DefaultLeaseDuration)}, forbidUpdate: true,
			wantNSRunID: "r1", wantHolder: "r2"},
		{name: "none, may create: created with the run's labels", wantCreatedNS: true, wantNSRunID: "r2", wantHolder: "r2"},
		{name: "none, may not create: says to apply the manifest", forbidCreate: true,
			wantErr: "apply suites/deploy/runner-rbac.yaml"},
		{name: "shipped with a Pod Security level too high for hostPath", objects: []runtime.Object{namespace(map[string]string{labelPSA: "baseline"})},
			wantErr: `enforces Pod Security level "baseline"`},
		{name: "left by a killed run (Lease expired): adopted", objects: []runtime.Object{namespace(leftByR1), lease("r1@h/1/x", "r1", 2*DefaultLeaseDuration)},
			wantCreatedNS: true, wantNSRunID: "r2", wantHolder: "r2"},
		{name: "shipped, a killed run's Lease: taken over", objects: []runtime.Object{namespace(shipped), lease("r1@h/1/x", "r1", 2*DefaultLeaseDuration)},
			wantHolder: "r2"},
		{name: "a live run's namespace: refused, untouched", objects: []runtime.Object{namespace(leftByR1), lease("r1@h/1/x", "r1", time.Second)},
			wantErr: "run r1@h/1/x renewed Lease", wantBusy: true, wantNSRunID: "r1", wantHolder: "r1"},
		{name: "shipped, a live run's Lease: refused", objects: []runtime.Object{namespace(shipped), lease("r1@h/1/x", "r1", time.Second)},
			wantErr: "keysync conformance cleanup --run-id r1", wantBusy: true, wantHolder: "r1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cs := fake.NewClientset(tt.objects...)
			if tt.forbidCreate {
				cs.PrependReactor("create", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, DefaultNamespace, errors.New("RBAC"))
				})
			}
			if tt.forbidUpdate {
				cs.PrependReactor("update", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, DefaultNamespace, errors.New("RBAC"))
				})
			}
			d := testDriver(cs, Options{})
			err := d.claim(ctx)
			defer func() {
				if d.stopRenew != nil {
					d.stopRenew()
				}
			}()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("claim: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("claim err = %v, want %q", err, tt.wantErr)
			case errors.Is(err, ErrBusy) != tt.wantBusy:
				t.Fatalf("claim err = %v: ErrBusy %v, want %v", err, errors.Is(err, ErrBusy), tt.wantBusy)
			}
			if d.createdNS != tt.wantCreatedNS {
				t.Errorf("createdNS = %v, want %v", d.createdNS, tt.wantCreatedNS)
			}
			ns, nsErr := cs.CoreV1().Namespaces().Get(ctx, DefaultNamespace, metav1.GetOptions{})
			if nsErr == nil && ns.Labels[runIDLabel] != tt.wantNSRunID {
				t.Errorf("namespace run-id %q, want %q", ns.Labels[runIDLabel], tt.wantNSRunID)
			}
			if tt.wantCreatedNS && (ns == nil || ns.Labels[labelPSA] != PSALevel || ns.Labels[labelManaged] != managedBy) {
				t.Errorf("namespace %v: want %s=%s and %s=%s", ns, labelPSA, PSALevel, labelManaged, managedBy)
			}
			l, err := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
			var holder string
			if err == nil {
				holder = strings.SplitN(*l.Spec.HolderIdentity, "@", 2)[0]
				if tt.wantHolder == "r2" && (*l.Spec.HolderIdentity != d.holder || l.Labels[runIDLabel] != "r2" || l.Labels[labelManaged] != managedBy) {
					t.Errorf("Lease %v: want held by %s with the run's labels", l, d.holder)
				}
			}
			if holder != tt.wantHolder {
				t.Errorf("Lease holder %q, want %q", holder, tt.wantHolder)
			}
		})
	}
}

// Close removes what the run made: the namespace it created, else its DaemonSet, pull Secret
// and Lease; a run whose Lease was taken over removes nothing.
func TestClose(t *testing.T) {
	tests := []struct {
		name      string
		createdNS bool
		lost      bool
		wantNS    bool // the namespace remains
		wantDS    bool // the DaemonSet remains
	}{
		{"created the namespace: removed", true, false, false, true},
		{"the shipped namespace: DaemonSet, Secret, Lease removed", false, false, true, false},
		{"Lease taken over by another run: nothing removed", false, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PullSecretName, Namespace: DefaultNamespace}}
			cs := fake.NewClientset(namespace(nil), DaemonSet(Options{Namespace: DefaultNamespace, Image: "i"}), sec)
			d := testDriver(cs, Options{PullSecret: []byte("{}")})
			if err := d.acquireLease(ctx); err != nil {
				t.Fatal(err)
			}
			d.createdNS = tt.createdNS
			if tt.lost {
				other := "r3@h/1/y"
				l, _ := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
				l.Spec.HolderIdentity = &other
				if _, err := cs.CoordinationV1().Leases(DefaultNamespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			_, nsErr := cs.CoreV1().Namespaces().Get(ctx, DefaultNamespace, metav1.GetOptions{})
			_, dsErr := cs.AppsV1().DaemonSets(DefaultNamespace).Get(ctx, AgentName, metav1.GetOptions{})
			_, secErr := cs.CoreV1().Secrets(DefaultNamespace).Get(ctx, PullSecretName, metav1.GetOptions{})
			_, leaseErr := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
			if got := nsErr == nil; got != tt.wantNS {
				t.Errorf("namespace remains %v, want %v", got, tt.wantNS)
			}
			if got := dsErr == nil; got != tt.wantDS {
				t.Errorf("DaemonSet remains %v, want %v", got, tt.wantDS)
			}
			if !tt.createdNS {
				if got := secErr == nil; got != tt.lost {
					t.Errorf("pull Secret remains %v, want %v", got, tt.lost)
				}
				if got := leaseErr == nil; got != tt.lost {
					t.Errorf("Lease remains %v, want %v", got, tt.lost)
				}
			}
		})
	}
}

// A Lease deleted during the run is made again at the next renewal, held by this run (so
// that a second run finds it live); one another run made first in the meantime is lost.
func TestRenewRecreatesDeletedLease(t *testing.T) {
	ctx := context.Background()
	for _, raced := range []bool{false, true} {
		cs := fake.NewClientset(namespace(map[string]string{labelPSA: PSALevel}))
		d := testDriver(cs, Options{})
		if err := d.claim(ctx); err != nil {
			t.Fatal(err)
		}
		d.stopRenew()
		d.stopRenew = nil
		if err := cs.CoordinationV1().Leases(DefaultNamespace).Delete(ctx, LeaseName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if raced {
			cs.PrependReactor("create", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, LeaseName)
			})
			if err := d.renewLease(ctx); !errors.Is(err, errLeaseLost) {
				t.Errorf("renew when another run re-made the Lease first: %v, want errLeaseLost", err)
			}
			continue
		}
		if err := d.renewLease(ctx); err != nil {
			t.Fatalf("renew after the Lease was deleted: %v", err)
		}
		l, err := cs.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil || *l.Spec.HolderIdentity != d.holder || l.Labels[runIDLabel] != "r2" || l.Labels[labelManaged] != managedBy {
			t.Fatalf("Lease after renewal: %v, %v; want re-made, held by %s with the run's labels", l, err, d.holder)
		}
		if holder, _, _ := liveHolder(l, time.Now()); holder != d.holder {
			t.Errorf("re-made Lease not live: holder %q", holder)
		}
		if err := testDriver(cs, Options{Labels: map[string]string{runIDLabel: "r3"}}).claim(ctx); !errors.Is(err, ErrBusy) {
			t.Errorf("a second run's claim: %v, want ErrBusy", err)
		}
		if held, err := d.stillHeld(ctx); err != nil || held == nil {
			t.Errorf("stillHeld after the Lease was re-made: %v, %v; want held", held, err)
		}
	}
}
