// Package leftovers finds and removes what keysync runs created in a cluster: every object
// labelled app.kubernetes.io/managed-by=keysync-suites (internal/names), optionally only
// those of one run (keysync.dev/run-id=<id>, or a test's child ID "<id>-<suffix>"), across
// all namespaces. It deletes nothing without the label: the server-side label selector
// chooses, and every object is checked again before it is deleted. Namespaces go last (their
// deletion takes whatever is still inside them with it).
//
// `keysync conformance cleanup`, the suites' interrupt handler (suites/conformance,
// interrupt.go) and `keysync doctor`'s agent share it.
package leftovers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/names"
)

// Object is one object a run left: its kind, namespace ("" for cluster-scoped) and name.
type Object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	RunID     string `json:"runID,omitempty"`
	// uid pins the deletion to the object that was listed (a precondition), so that an
	// unlabelled object re-created under the same name is never deleted.
	uid types.UID
}

// String is "Kind namespace/name" (or "Kind name").
func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Options select what Sweep removes.
type Options struct {
	// RunID limits the sweep to one run (its ID or "<ID>-..." child IDs); empty: every run.
	RunID string
	// DryRun lists without deleting.
	DryRun bool
	// Namespaces, when set, limits the sweep to these namespaces (and these Namespace objects,
	// read by name): a run sweeps where it created objects, so that it needs no cluster-wide
	// list of Secrets. Empty: every namespace (`keysync conformance cleanup`).
	Namespaces []string
	// Fallback are the namespaces looked in, when Namespaces is empty, for a kind this identity
	// may not list cluster-wide (Forbidden: the runner's least-privilege role): where runs
	// create objects (the synchronizer's namespace, default, keysync-suites). Report.Notes say
	// so.
	Fallback []string
}

// Report is what SweepReport did.
type Report struct {
	// Removed are the objects removed (with DryRun: that would be).
	Removed []Object
	// Skipped are labelled objects left alone, each with why.
	Skipped []Skipped
	// Notes say where the sweep looked less than everywhere, and why.
	Notes []string
}

// Skipped is a labelled object the sweep left alone, and why.
type Skipped struct {
	Object
	Why string
}

// String is the object and why it was skipped.
func (s Skipped) String() string { return s.Object.String() + ": " + s.Why }

// Labels of what suites/deploy/runner-rbac.yaml ships (its keysync-suites namespace): never
// removed, even with the managed-by label.
const (
	shippedLabel = "app.kubernetes.io/name"
	shippedName  = "keysync-conformance-runner"
)

// Selector is the label selector every listing uses.
func Selector() string { return names.LabelManagedBy + "=" + names.ManagedBy }

// Matches reports whether labels mark an object of the run (every run when runID is empty).
func Matches(labels map[string]string, runID string) bool {
	if labels[names.LabelManagedBy] != names.ManagedBy {
		return false
	}
	if runID == "" {
		return true
	}
	id := labels[names.LabelRunID]
	return id == runID || strings.HasPrefix(id, runID+"-")
}

type (
	podT       = corev1.Pod
	serviceT   = corev1.Service
	daemonSetT = appsv1.DaemonSet
	secretT    = corev1.Secret
	leaseT     = coordinationv1.Lease
	namespaceT = corev1.Namespace
)

// kind lists and deletes one resource type.
type kind struct {
	name string
	// list lists the kind in namespace ns ("": every namespace; ignored for Namespaces).
	list func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error)
	del  func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error
}

// entry is one listed object: its metadata and, for a Lease, whether it is still held.
type entry struct {
	metav1.ObjectMeta
	// live: a Lease renewed within its duration (its run is still going); renewed: how long ago.
	live    bool
	renewed time.Duration
}

func metas[T any](items []T, get func(*T) metav1.ObjectMeta) []entry {
	out := make([]entry, 0, len(items))
	for i := range items {
		out = append(out, entry{ObjectMeta: get(&items[i])})
	}
	return out
}

// leaseEntry is a Lease's entry: live when it has a holder and was renewed within its duration.
func leaseEntry(l *leaseT, now time.Time) entry {
	e := entry{ObjectMeta: l.ObjectMeta}
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return e
	}
	e.renewed = now.Sub(s.RenewTime.Time)
	e.live = e.renewed < time.Duration(*s.LeaseDurationSeconds)*time.Second
	return e
}

// kinds are what runs create, in deletion order: namespaces last.
var kinds = []kind{
	{"Pod", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *podT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Pods(ns).Delete(ctx, name, do)
	}},
	{"Service", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.CoreV1().Services(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *serviceT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Services(ns).Delete(ctx, name, do)
	}},
	{"DaemonSet", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.AppsV1().DaemonSets(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *daemonSetT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.AppsV1().DaemonSets(ns).Delete(ctx, name, do)
	}},
	{"Secret", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.CoreV1().Secrets(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *secretT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Secrets(ns).Delete(ctx, name, do)
	}},
	{"Lease", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.CoordinationV1().Leases(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		out := make([]entry, 0, len(l.Items))
		for i := range l.Items {
			out = append(out, leaseEntry(&l.Items[i], now))
		}
		return out, nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoordinationV1().Leases(ns).Delete(ctx, name, do)
	}},
	{"Namespace", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]entry, error) {
		l, err := cs.CoreV1().Namespaces().List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *namespaceT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, _, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Namespaces().Delete(ctx, name, do)
	}},
}

// Find lists the objects Sweep would remove, in deletion order: those of run runID (every run
// when empty) in namespaces (every namespace when empty).
func Find(ctx context.Context, cs kubernetes.Interface, runID string, namespaces ...string) ([]Object, error) {
	r, err := find(ctx, cs, Options{RunID: runID, Namespaces: namespaces})
	return r.Removed, err
}

// find lists what a sweep of o removes (Report.Removed), skips and why.
func find(ctx context.Context, cs kubernetes.Interface, o Options) (Report, error) {
	var r Report
	listed := make([][]entry, len(kinds))
	for i, k := range kinds {
		items, note, err := k.find(ctx, cs, o)
		if note != "" {
			r.Notes = append(r.Notes, note)
		}
		if err != nil {
			return r, fmt.Errorf("failed to list %ss labelled %s: %w", k.name, Selector(), err)
		}
		listed[i] = items
	}
	// Without a run named, a run whose Lease is still renewed is live: it and what it made
	// stay (--run-id names it to remove it anyway).
	live := map[string]string{} // run ID -> why
	var liveLeases []string
	if o.RunID == "" {
		for i, k := range kinds {
			if k.name != "Lease" {
				continue
			}
			for _, e := range listed[i] {
				if !e.live || !Matches(e.Labels, "") || e.DeletionTimestamp != nil {
					continue
				}
				id := e.Labels[names.LabelRunID]
				why := fmt.Sprintf("run %q is live: its Lease %s/%s was renewed %s ago (--run-id %s removes it anyway)",
					id, e.Namespace, e.Name, e.renewed.Round(time.Second), id)
				liveLeases = append(liveLeases, e.Namespace+"/"+e.Name)
				if id != "" {
					live[id] = why
				} else {
					live["\x00"+e.Namespace+"/"+e.Name] = why
				}
			}
		}
	}
	for i, k := range kinds {
		var found []Object
		var skipped []Skipped
		for _, m := range listed[i] {
			if !Matches(m.Labels, o.RunID) || m.DeletionTimestamp != nil {
				continue
			}
			obj := Object{Kind: k.name, Namespace: m.Namespace, Name: m.Name, RunID: m.Labels[names.LabelRunID], uid: m.UID}
			if why := skipWhy(k.name, m, live); why != "" {
				skipped = append(skipped, Skipped{Object: obj, Why: why})
				continue
			}
			found = append(found, obj)
		}
		sort.Slice(found, func(i, j int) bool { return found[i].String() < found[j].String() })
		sort.Slice(skipped, func(i, j int) bool { return skipped[i].String() < skipped[j].String() })
		r.Removed = append(r.Removed, found...)
		r.Skipped = append(r.Skipped, skipped...)
	}
	return r, nil
}

// skipWhy says why a labelled object stays ("" when it goes): the shipped namespace, or an
// object of a live run (live: run ID, or NUL+namespace/name of a Lease without one, to why).
func skipWhy(kindName string, m entry, live map[string]string) string {
	if kindName == "Namespace" && m.Labels[shippedLabel] == shippedName {
		return "shipped by suites/deploy/runner-rbac.yaml (" + shippedLabel + "=" + shippedName + "): never removed"
	}
	if kindName == "Lease" {
		if why, ok := live["\x00"+m.Namespace+"/"+m.Name]; ok {
			return why
		}
	}
	for id, why := range live {
		if !strings.HasPrefix(id, "\x00") && Matches(m.Labels, id) {
			return why
		}
	}
	return ""
}

// find lists k's labelled objects everywhere, or in o.Namespaces only (Namespace objects by
// name: a missing one is no error). When this identity may not list k everywhere it looks in
// o.Fallback, and note says so.
func (k kind) find(ctx context.Context, cs kubernetes.Interface, o Options) (_ []entry, note string, _ error) {
	lo := metav1.ListOptions{LabelSelector: Selector()}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		items, err := k.list(ctx, cs, "", lo)
		if !apierrors.IsForbidden(err) || len(o.Fallback) == 0 {
			return items, "", err
		}
		namespaces = o.Fallback
		note = fmt.Sprintf("this identity may not list %ss in every namespace (Forbidden): looked in %s only",
			k.name, strings.Join(namespaces, ", "))
	}
	var out []entry
	for _, ns := range namespaces {
		if k.name != "Namespace" {
			items, err := k.list(ctx, cs, ns, lo)
			if apierrors.IsForbidden(err) {
				// A runner that may not list this kind here (a least-privilege role) could not
				// have created it here either.
				continue
			}
			if err != nil {
				return nil, note, err
			}
			out = append(out, items...)
			continue
		}
		obj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
		case err != nil:
			return nil, note, err
		default:
			if Matches(obj.Labels, "") {
				out = append(out, entry{ObjectMeta: obj.ObjectMeta})
			}
		}
	}
	return out, note, nil
}

// Sweep removes (or, with DryRun, lists) what runs left and returns what it removed. It goes
// on past a failed deletion and returns every error joined.
func Sweep(ctx context.Context, cs kubernetes.Interface, o Options) ([]Object, error) {
	r, err := SweepReport(ctx, cs, o)
	return r.Removed, err
}

// SweepReport is Sweep, and says what it left alone and where it did not look. Without
// o.RunID it leaves a live run (its Lease renewed within its duration) and what that run made
// alone, and it never removes the shipped keysync-suites namespace.
func SweepReport(ctx context.Context, cs kubernetes.Interface, o Options) (Report, error) {
	r, err := find(ctx, cs, o)
	if err != nil || o.DryRun {
		return r, err
	}
	objs := r.Removed
	zero := int64(0)
	background := metav1.DeletePropagationBackground
	var removed []Object
	var errs []error
	for _, obj := range objs {
		k := kindNamed(obj.Kind)
		uid := obj.uid
		do := metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}}
		if obj.Kind == "Pod" {
			do.GracePeriodSeconds = &zero
		}
		err := k.del(ctx, cs, obj.Namespace, obj.Name, do)
		switch {
		case apierrors.IsConflict(err): // replaced since listed: not ours any more
			continue
		case err != nil && !apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("failed to delete %s: %w", obj, err))
			continue
		}
		removed = append(removed, obj)
	}
	r.Removed = removed
	return r, errors.Join(errs...)
}

func kindNamed(name string) kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	panic("leftovers: unknown kind " + name)
}
