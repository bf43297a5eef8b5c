package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
)

// deployFix says how to restore one of the addon's objects.
func deployFix(manifest string) string {
	return "re-create it as the addon deploys it (reference manifest: syncer/deploy/" + manifest + ")"
}

func checkNamespace(ctx context.Context, e *Env) []Result {
	ns, err := e.Client.CoreV1().Namespaces().Get(ctx, e.Namespace, metav1.GetOptions{})
	if err != nil {
		return []Result{apiFail("", "Namespace "+e.Namespace, err, deployFix("namespace.yaml")+", then the other objects of syncer/deploy")}
	}
	if ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil {
		return []Result{fail("", "Namespace "+e.Namespace+" is being deleted (Terminating)",
			"wait for the deletion to finish, then deploy the addon again; `kubectl get ns "+e.Namespace+" -o yaml` shows what blocks it")}
	}
	return []Result{ok("", "Namespace "+e.Namespace+" exists")}
}

func checkServiceAccount(ctx context.Context, e *Env) []Result {
	what := "ServiceAccount " + e.Namespace + "/" + names.Addon
	if _, err := e.Client.CoreV1().ServiceAccounts(e.Namespace).Get(ctx, names.Addon, metav1.GetOptions{}); err != nil {
		return []Result{apiFail("", what, err, deployFix("serviceaccount.yaml"))}
	}
	return []Result{ok("", what+" exists")}
}

// roleNeeds is what the synchronizer must be allowed in its namespace.
var roleNeeds = []struct {
	resource string
	verbs    []string
	status   Status
	why      string
}{
	{"secrets", []string{"get", "list", "watch"}, Fail, "the synchronizer cannot see the key Secrets"},
	{"events", []string{"create"}, Warn, "the synchronizer cannot report KeyRejected/UnwrapFailed Events"},
}

func checkRole(ctx context.Context, e *Env) []Result {
	what := "Role " + e.Namespace + "/" + names.Addon
	role, err := e.Client.RbacV1().Roles(e.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		return []Result{apiFail("", what, err, deployFix("role.yaml"))}
	}
	var out []Result
	for _, n := range roleNeeds {
		var missing []string
		for _, v := range n.verbs {
			if !allows(role.Rules, n.resource, v) {
				missing = append(missing, v)
			}
		}
		if len(missing) > 0 {
			out = append(out, Result{Status: n.status,
				Found: fmt.Sprintf("%s does not grant %s on %s: %s", what, strings.Join(missing, ", "), n.resource, n.why),
				Fix:   fmt.Sprintf("add verbs %s on %s to the Role (syncer/deploy/role.yaml)", strings.Join(n.verbs, ", "), n.resource)})
		}
	}
	if len(out) == 0 {
		out = append(out, ok("", what+" grants get, list, watch on secrets and create on events"))
	}
	return out
}

// allows reports whether rules grant verb on a core-group resource.
func allows(rules []rbacv1.PolicyRule, resource, verb string) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
			len(r.ResourceNames) == 0 &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

func checkRoleBinding(ctx context.Context, e *Env) []Result {
	what := "RoleBinding " + e.Namespace + "/" + names.Addon
	rb, err := e.Client.RbacV1().RoleBindings(e.Namespace).Get(ctx, names.Addon, metav1.GetOptions{})
	if err != nil {
		return []Result{apiFail("", what, err, deployFix("rolebinding.yaml"))}
	}
	var problems []string
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != names.Addon {
		problems = append(problems, fmt.Sprintf("roleRef is %s/%s, want Role/%s", rb.RoleRef.Kind, rb.RoleRef.Name, names.Addon))
	}
	bound := false
	var subjects []string
	for _, s := range rb.Subjects {
		ns := s.Namespace
		if ns == "" {
			ns = e.Namespace
		}
		subjects = append(subjects, s.Kind+" "+ns+"/"+s.Name)
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == names.Addon && ns == e.Namespace {
			bound = true
		}
	}
	if !bound {
		got := "no subjects"
		if len(subjects) > 0 {
			got = "subjects " + strings.Join(subjects, ", ")
		}
		problems = append(problems, fmt.Sprintf("%s, want ServiceAccount %s/%s", got, e.Namespace, names.Addon))
	}
	if len(problems) > 0 {
		return []Result{fail("", what+" does not bind the synchronizer's ServiceAccount to its Role: "+strings.Join(problems, "; "),
			"bind ServiceAccount "+names.Addon+" to Role "+names.Addon+" (syncer/deploy/rolebinding.yaml; roleRef cannot change: delete and re-create the RoleBinding)")}
	}
	return []Result{ok("", what+" binds ServiceAccount "+names.Addon+" to Role "+names.Addon)}
}
