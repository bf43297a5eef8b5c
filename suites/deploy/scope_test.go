package deploy

import (
	"bytes"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// clusterWide is the scope of a grant bound by a ClusterRoleBinding.
const clusterWide = "*"

// manifest is what runner-rbac.yaml holds: its roles' rules, where each role is bound, and
// its namespaces.
type manifest struct {
	rules      map[string][]rbacv1.PolicyRule // by ClusterRole
	bound      map[string][]string            // ClusterRole -> namespaces (clusterWide)
	namespaces map[string]corev1.Namespace
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile("runner-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{rules: map[string][]rbacv1.PolicyRule{}, bound: map[string][]string{}, namespaces: map[string]corev1.Namespace{}}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(doc, &r); err != nil {
				t.Fatal(err)
			}
			m.rules[r.Name] = r.Rules
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := yaml.UnmarshalStrict(doc, &b); err != nil {
				t.Fatal(err)
			}
			m.bound[b.RoleRef.Name] = append(m.bound[b.RoleRef.Name], clusterWide)
		case "RoleBinding":
			var b rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict(doc, &b); err != nil {
				t.Fatal(err)
			}
			if b.RoleRef.Kind != "ClusterRole" {
				t.Errorf("RoleBinding %s/%s binds a %s: the tests read ClusterRoles only", b.Namespace, b.Name, b.RoleRef.Kind)
			}
			m.bound[b.RoleRef.Name] = append(m.bound[b.RoleRef.Name], b.Namespace)
		case "Namespace":
			var n corev1.Namespace
			if err := yaml.UnmarshalStrict(doc, &n); err != nil {
				t.Fatal(err)
			}
			m.namespaces[n.Name] = n
		}
	}
	return m
}

// scopes are where the manifest grants tr: namespaces, or clusterWide.
func (m manifest) scopes(tr triple) []string {
	var out []string
	for role, rules := range m.rules {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, tr.group) && slices.Contains(r.Resources, tr.resource) && slices.Contains(r.Verbs, tr.verb) {
				out = append(out, m.bound[role]...)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// The runner creates and changes things only in the namespaces a run works in, never
// cluster-wide: no Secret, Pod or exec session elsewhere (each would hand it a ServiceAccount's
// token in kube-system), no namespace, no pod deleted elsewhere. Cluster-wide it only reads.
func TestRunnerRBACScopes(t *testing.T) {
	m := readManifest(t)
	const sync, pods, agent = "image-key-synchronizer", "default", cluster.DefaultNamespace
	tests := []struct {
		tr   triple
		want []string
	}{
		{triple{"", "secrets", "create"}, []string{pods, sync, agent}},
		{triple{"", "secrets", "get"}, []string{pods, sync}},
		{triple{"", "secrets", "update"}, []string{pods, sync}},
		{triple{"", "pods", "create"}, []string{pods}},
		{triple{"", "pods", "delete"}, []string{pods, sync, agent}},
		{triple{"", "pods/exec", "create"}, []string{agent}},
		{triple{"", "pods/exec", "get"}, []string{agent}},
		{triple{"", "services", "create"}, []string{pods}},
		{triple{"apps", "daemonsets", "create"}, []string{agent}},
		{triple{"apps", "daemonsets", "update"}, []string{agent}},
		{triple{"coordination.k8s.io", "leases", "update"}, []string{agent}},
		{triple{"", "namespaces", "create"}, nil},
		{triple{"", "namespaces", "delete"}, nil},
		{triple{"", "serviceaccounts/token", "create"}, nil},
		{triple{"rbac.authorization.k8s.io", "rolebindings", "create"}, nil},
	}
	for _, tt := range tests {
		if got := m.scopes(tt.tr); !slices.Equal(got, tt.want) {
			t.Errorf("%s granted in %v, want %v", tt.tr, got, tt.want)
		}
	}
	readOnly := map[string]bool{"get": true, "list": true, "watch": true}
	for role, rules := range m.rules {
		if !slices.Contains(m.bound[role], clusterWide) {
			continue
		}
		for _, r := range rules {
			for _, v := range r.Verbs {
				if !readOnly[v] {
					t.Errorf("ClusterRole %s (cluster-wide) grants %s on %v: cluster-wide the runner only reads", role, v, r.Resources)
				}
			}
		}
	}
	for role := range m.rules {
		if len(m.bound[role]) == 0 {
			t.Errorf("ClusterRole %s is bound nowhere", role)
		}
	}
}

// The manifest ships the node agent's namespace with the Pod Security level the agent needs,
// unlabelled for the suites' sweeps (which must never remove it).
func TestRunnerManifestShipsAgentNamespace(t *testing.T) {
	m := readManifest(t)
	ns, ok := m.namespaces[cluster.DefaultNamespace]
	if !ok {
		t.Fatalf("no Namespace %s in runner-rbac.yaml (namespaces: %v)", cluster.DefaultNamespace, slices.Collect(maps.Keys(m.namespaces)))
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != cluster.PSALevel {
		t.Errorf("namespace %s enforces %q, want %q", ns.Name, got, cluster.PSALevel)
	}
	for k := range ns.Labels {
		if strings.HasPrefix(k, "app.kubernetes.io/managed-by") || strings.HasPrefix(k, "keysync.dev/") {
			t.Errorf("namespace %s carries %s: a run's sweep or `keysync conformance cleanup` would remove it", ns.Name, k)
		}
	}
}
