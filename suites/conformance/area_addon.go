// Area addon: the synchronizer's resources are exactly the runbook's.

package conformance

import (
	"context"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
)

func featureAddon() Feature {
	return Feature{
		Name: "the addon's resources are exactly the runbook's", Area: AreaAddon,
		Setup: func(_ context.Context, t T, c *Context) { c.requireCluster(t) },
		Assess: []Step{
			{Name: "Namespace, ServiceAccount, Role, RoleBinding and DaemonSet exist with the runbook's names", Profile: ProfileRequired, Fn: assessAddonObjects},
			{Name: "one ready synchronizer pod per schedulable node", Profile: ProfileRequired, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				if err := c.waitAddonPods(ctx, nil); err != nil {
					t.Fatalf("%v", err)
				}
			}},
			{Name: "the Role grants exactly get/list/watch on secrets and create/patch on events, in its namespace only", Profile: ProfileRecommended, Independent: true, Fn: assessAddonRBAC},
		},
	}
}

func assessAddonObjects(ctx context.Context, t T, c *Context) {
	cs := c.Client
	if _, err := cs.CoreV1().Namespaces().Get(ctx, names.Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("Namespace %s: %v", names.Namespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount %s/%s: %v", names.Namespace, names.Addon, err)
	}
	if _, err := cs.RbacV1().Roles(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{}); err != nil {
		t.Errorf("Role %s/%s: %v", names.Namespace, names.Addon, err)
	}
	rb, err := cs.RbacV1().RoleBindings(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		t.Errorf("RoleBinding %s/%s: %v", names.Namespace, names.Addon, err)
	} else {
		if want := (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: names.Addon}); rb.RoleRef != want {
			t.Errorf("RoleBinding %s refers to %+v, want %+v", names.Addon, rb.RoleRef, want)
		}
		want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: names.Addon, Namespace: names.Namespace}
		if len(rb.Subjects) != 1 || rb.Subjects[0] != want {
			t.Errorf("RoleBinding %s binds %+v, want exactly %+v", names.Addon, rb.Subjects, want)
		}
	}
	ds, err := cs.AppsV1().DaemonSets(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		t.Errorf("DaemonSet %s/%s: %v", names.Namespace, names.Addon, err)
	} else if sa := ds.Spec.Template.Spec.ServiceAccountName; sa != names.Addon {
		t.Errorf("DaemonSet %s runs as ServiceAccount %q, want %q", names.Addon, sa, names.Addon)
	}
}

// RoleRules are the grants the runbook gives the addon: resource → verbs (core API group).
var roleRules = map[string][]string{
	"secrets": {"get", "list", "watch"},
	"events":  {"create", "patch"},
}

// ruleGrants flattens rules to resource → sorted verbs, or says what is not allowed in them.
func ruleGrants(rules []rbacv1.PolicyRule) (map[string][]string, []string) {
	got := map[string][]string{}
	var bad []string
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			bad = append(bad, fmt.Sprintf("non-resource URLs %v", r.NonResourceURLs))
		}
		if len(r.APIGroups) != 1 || r.APIGroups[0] != "" {
			bad = append(bad, fmt.Sprintf("API groups %q (want only the core group)", r.APIGroups))
		}
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				if !slices.Contains(got[res], v) {
					got[res] = append(got[res], v)
				}
			}
		}
	}
	for res := range got {
		slices.Sort(got[res])
	}
	return got, bad
}

func sameGrants(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for res, vs := range want {
		w := slices.Sorted(slices.Values(vs))
		if !slices.Equal(got[res], w) {
			return false
		}
	}
	return true
}

func bindsAddon(subjects []rbacv1.Subject) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == names.Addon && s.Namespace == names.Namespace
	})
}

func assessAddonRBAC(ctx context.Context, t T, c *Context) {
	role, err := c.Client.RbacV1().Roles(names.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("failed to get Role %s/%s: %v", names.Namespace, names.Addon, err)
	}
	got, bad := ruleGrants(role.Rules)
	for _, b := range bad {
		t.Errorf("Role %s grants %s", names.Addon, b)
	}
	if !sameGrants(got, roleRules) {
		t.Errorf("Role %s grants %v, want exactly %v", names.Addon, got, roleRules)
	}
	crbs, err := c.Client.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("failed to list ClusterRoleBindings: %v", err)
	}
	for _, b := range crbs.Items {
		if bindsAddon(b.Subjects) {
			t.Errorf("ClusterRoleBinding %s binds the addon's ServiceAccount: its grants must stay in %s", b.Name, names.Namespace)
		}
	}
	rbs, err := c.Client.RbacV1().RoleBindings(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("failed to list RoleBindings: %v", err)
	}
	for _, b := range rbs.Items {
		if bindsAddon(b.Subjects) && (b.Namespace != names.Namespace || b.Name != names.Addon) {
			t.Errorf("RoleBinding %s/%s also binds the addon's ServiceAccount", b.Namespace, b.Name)
		}
	}
}
