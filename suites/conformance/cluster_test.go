package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance/report"
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

func TestSchedulable(t *testing.T) {
	cp := corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name string
		node corev1.Node
		tols []corev1.Toleration
		want bool
	}{
		{"plain node", corev1.Node{}, nil, true},
		{"cordoned", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, false},
		{"control plane, not tolerated", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}}, nil, false},
		{"control plane, tolerate everything", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Operator: corev1.TolerationOpExists}}, true},
		{"control plane, tolerated by key", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Key: cp.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, true},
		{"other effect tolerated only", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{cp}}},
			[]corev1.Toleration{{Key: cp.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, false},
		{"PreferNoSchedule ignored", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectPreferNoSchedule}}}}, nil, true},
		{"Equal value mismatch", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Value: "a", Effect: corev1.TaintEffectNoExecute}}}},
			[]corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpEqual, Value: "b"}}, false},
		{"Equal value match", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "x", Value: "a", Effect: corev1.TaintEffectNoExecute}}}},
			[]corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpEqual, Value: "a"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := schedulable(tt.node, tt.tols); got != tt.want {
				t.Errorf("schedulable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckBlockedPull(t *testing.T) {
	blocked := errors.New(`rpc error: code = Unknown desc = registry docker.io is blocked in /etc/containers/registries.conf`)
	tests := []struct {
		name string
		err  error
		took time.Duration
		want string // substring of the complaint; "" = fine
	}{
		{"blocked quickly", blocked, 300 * time.Millisecond, ""},
		{"succeeded", nil, time.Second, "succeeded"},
		{"dns", errors.New("pinging container registry: dial tcp: lookup registry-1.docker.io: no such host"), time.Second, "tried the network"},
		{"timeout", errors.New("Get https://x/v2/: dial tcp 1.2.3.4:443: i/o timeout"), 30 * time.Second, "tried the network"},
		{"other error", errors.New("short-name resolution disabled"), time.Second, "without the registries.conf"},
		{"blocked slowly", blocked, time.Minute, "took 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkBlockedPull(tt.err, tt.took)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkBlockedPull = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCorefileForwards(t *testing.T) {
	tests := []struct {
		name, corefile string
		want           int
	}{
		{"kubeadm default", ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n    }\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n}\n", 1},
		{"no forward", ".:53 {\n    errors\n    kubernetes cluster.local\n    cache 30\n}\n", 0},
		{"old proxy", ".:53 {\n    proxy . 8.8.8.8\n}\n", 1},
		{"forward in a comment word", ".:53 {\n    # forwarding disabled\n}\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := corefileForwards(tt.corefile); len(got) != tt.want {
				t.Errorf("corefileForwards = %q, want %d lines", got, tt.want)
			}
		})
	}
}

// On the node lab the cluster features skip, and say which lab they need.
func TestClusterFeaturesSkipOnNodeLab(t *testing.T) {
	c := &Context{Lab: lab.Env{Lab: lab.KindNode}, RunID: "test"}
	fs := []Feature{featureAddon(), featurePod(), featureNetwork(), featureIsolation(), featureResilience()}
	cases := Run(context.Background(), c, fs, RunOptions{})
	setups := 0
	for _, rc := range cases {
		if rc.Status != report.Skipped {
			t.Errorf("%s/%s: status %s, want skipped (%s)", rc.Suite, rc.Name, rc.Status, rc.Message)
		}
		if rc.Name == "setup" {
			setups++
			if !strings.Contains(rc.Message, "the kind lab") || !strings.Contains(rc.Message, "KEYSYNC_LAB=node") {
				t.Errorf("%s: skip message %q does not name the lab it needs", rc.Suite, rc.Message)
			}
		}
	}
	if setups != len(fs) {
		t.Errorf("%d setups reported, want %d", setups, len(fs))
	}
}

func TestDisruptiveLabel(t *testing.T) {
	var resilience Feature
	for _, f := range Features() {
		if f.Area == AreaResilience {
			resilience = f
		}
	}
	tests := []struct {
		opts RunOptions
		want bool
	}{
		{RunOptions{}, true},
		{RunOptions{SkipLabels: map[string][]string{LabelDisruptive: {"true"}}}, false},
		{RunOptions{Labels: map[string][]string{LabelDisruptive: {"true"}}}, true},
		{RunOptions{Labels: map[string][]string{LabelArea: {"resilience"}, LabelDisruptive: {"true"}}}, true},
		{RunOptions{Labels: map[string][]string{LabelArea: {"plain"}}}, false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if _, got := selected(resilience, tt.opts); got != tt.want {
				t.Errorf("selected = %v, want %v", got, tt.want)
			}
		})
	}
	// Non-disruptive features have no such label and are kept by --skip-labels disruptive=true.
	for _, f := range Features() {
		if f.Area != AreaResilience {
			if _, ok := selected(f, RunOptions{SkipLabels: map[string][]string{LabelDisruptive: {"true"}}}); !ok {
				t.Errorf("feature %q was skipped by disruptive=true", f.Name)
			}
		}
	}
}

// Every area has its TestXxx in suites/e2e, or `go test ./suites/...` would never run it.
func TestEveryAreaHasAnE2ETest(t *testing.T) {
	e2e, err := os.ReadFile(filepath.Join("..", "e2e", "features_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	decls, err := os.ReadFile("conformance.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := regexp.MustCompile(`(?m)^\s+(Area\w+)\s+Area = "`).FindAllStringSubmatch(string(decls), -1)
	if len(consts) != len(Areas) {
		t.Fatalf("conformance.go declares %d areas, Areas lists %d", len(consts), len(Areas))
	}
	for _, m := range consts {
		if !strings.Contains(string(e2e), "conformance.FeaturesIn(conformance."+m[1]+")") {
			t.Errorf("suites/e2e/features_test.go has no test running conformance.%s", m[1])
		}
	}
}
