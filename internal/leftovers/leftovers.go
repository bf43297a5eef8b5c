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
}

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
	list func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error)
	del  func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error
}

func metas[T any](items []T, get func(*T) metav1.ObjectMeta) []metav1.ObjectMeta {
	out := make([]metav1.ObjectMeta, 0, len(items))
	for i := range items {
		out = append(out, get(&items[i]))
	}
	return out
}

// kinds are what runs create, in deletion order: namespaces last.
var kinds = []kind{
	{"Pod", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *podT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Pods(ns).Delete(ctx, name, do)
	}},
	{"Service", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
		l, err := cs.CoreV1().Services(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *serviceT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Services(ns).Delete(ctx, name, do)
	}},
	{"DaemonSet", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
		l, err := cs.AppsV1().DaemonSets(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *daemonSetT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.AppsV1().DaemonSets(ns).Delete(ctx, name, do)
	}},
	{"Secret", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
		l, err := cs.CoreV1().Secrets(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *secretT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoreV1().Secrets(ns).Delete(ctx, name, do)
	}},
	{"Lease", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
		l, err := cs.CoordinationV1().Leases(ns).List(ctx, lo)
		if err != nil {
			return nil, err
		}
		return metas(l.Items, func(o *leaseT) metav1.ObjectMeta { return o.ObjectMeta }), nil
	}, func(ctx context.Context, cs kubernetes.Interface, ns, name string, do metav1.DeleteOptions) error {
		return cs.CoordinationV1().Leases(ns).Delete(ctx, name, do)
	}},
	{"Namespace", func(ctx context.Context, cs kubernetes.Interface, ns string, lo metav1.ListOptions) ([]metav1.ObjectMeta, error) {
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
	var out []Object
	for _, k := range kinds {
		items, err := k.find(ctx, cs, namespaces)
		if err != nil {
			return out, fmt.Errorf("failed to list %ss labelled %s: %w", k.name, Selector(), err)
		}
		var found []Object
		for _, m := range items {
			if !Matches(m.Labels, runID) || m.DeletionTimestamp != nil {
				continue
			}
			found = append(found, Object{Kind: k.name, Namespace: m.Namespace, Name: m.Name, RunID: m.Labels[names.LabelRunID], uid: m.UID})
		}
		sort.Slice(found, func(i, j int) bool { return found[i].String() < found[j].String() })
		out = append(out, found...)
	}
	return out, nil
}

// find lists k's labelled objects everywhere, or in namespaces only (Namespace objects by
// name: a missing one is no error).
func (k kind) find(ctx context.Context, cs kubernetes.Interface, namespaces []string) ([]metav1.ObjectMeta, error) {
	lo := metav1.ListOptions{LabelSelector: Selector()}
	if len(namespaces) == 0 {
		return k.list(ctx, cs, "", lo)
	}
	var out []metav1.ObjectMeta
	for _, ns := range namespaces {
		if k.name != "Namespace" {
			items, err := k.list(ctx, cs, ns, lo)
			if apierrors.IsForbidden(err) {
				// A runner that may not list this kind here (a least-privilege role) could not
				// have created it here either.
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, items...)
			continue
		}
		obj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		default:
			out = append(out, obj.ObjectMeta)
		}
	}
	return out, nil
}

// Sweep removes (or, with DryRun, lists) what runs left and returns what it removed. It goes
// on past a failed deletion and returns every error joined.
func Sweep(ctx context.Context, cs kubernetes.Interface, o Options) ([]Object, error) {
	objs, err := Find(ctx, cs, o.RunID, o.Namespaces...)
	if err != nil || o.DryRun {
		return objs, err
	}
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
	return removed, errors.Join(errs...)
}

func kindNamed(name string) kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	panic("leftovers: unknown kind " + name)
}
