package conformance

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestRuleGrants(t *testing.T) {
	core := []string{""}
	tests := []struct {
		name    string
		rules   []rbacv1.PolicyRule
		same    bool
		badWant int
	}{
		{"the runbook's", []rbacv1.PolicyRule{
			{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"watch", "get", "list"}},
			{APIGroups: core, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}, true, 0},
		{"split over rules", []rbacv1.PolicyRule{
			{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
			{APIGroups: core, Resources: []string{"secrets", "events"}, Verbs: []string{"watch"}},
			{APIGroups: core, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}, false, 0},
		{"update on secrets", []rbacv1.PolicyRule{
			{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "update"}},
			{APIGroups: core, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}, false, 0},
		{"wildcard", []rbacv1.PolicyRule{{APIGroups: core, Resources: []string{"*"}, Verbs: []string{"*"}}}, false, 0},
		{"events.k8s.io group", []rbacv1.PolicyRule{
			{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}, true, 1},
		{"missing events", []rbacv1.PolicyRule{
			{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}}}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := ruleGrants(tt.rules)
			if same := sameGrants(got, roleRules); same != tt.same {
				t.Errorf("sameGrants(%v) = %v, want %v", got, same, tt.same)
			}
			if len(bad) != tt.badWant {
				t.Errorf("bad = %q, want %d entries", bad, tt.badWant)
			}
		})
	}
}
