package doctor

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestCovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		root, dir string
		want      bool
	}{
		{"/etc/crio/keys", "/etc/crio/keys/synced", true},
		{"/etc/crio/keys/", "/etc/crio/keys/synced", true},
		{"/etc/crio/keys", "/etc/crio/keys", true},
		{"/", "/etc/crio/keys/synced", true},
		{"/etc/crio/keys/synced", "/etc/crio/keys", false},
		{"/etc/crio/key", "/etc/crio/keys/synced", false},
		{"/etc/crio/other", "/etc/crio/keys/synced", false},
	} {
		if got := covers(tc.root, tc.dir); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.root, tc.dir, got, tc.want)
		}
	}
}

func TestHostKeysDir(t *testing.T) {
	t.Parallel()
	ds := func(args []string, mountPath, subPath, hostPath string) *appsv1.DaemonSet {
		d := &appsv1.DaemonSet{}
		d.Spec.Template.Spec = corev1.PodSpec{
			Containers: []corev1.Container{{Name: "s", Args: args,
				VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: mountPath, SubPath: subPath}}}},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPath}}}},
		}
		return d
	}
	for _, tc := range []struct {
		name string
		ds   *appsv1.DaemonSet
		want string
	}{
		{"runbook layout", ds([]string{"--keys-dir=/etc/crio/keys/synced"}, "/etc/crio", "", "/etc/crio"), "/etc/crio/keys/synced"},
		{"mounted elsewhere", ds([]string{"--keys-dir", "/host/keys/synced"}, "/host", "", "/etc/crio"), "/etc/crio/keys/synced"},
		{"subPath", ds([]string{"--keys-dir=/k/synced"}, "/k", "keys", "/etc/crio"), "/etc/crio/keys/synced"},
		{"not under a mount", ds([]string{"--keys-dir=/data"}, "/etc/crio", "", "/etc/crio"), "/data"},
		{"no flag", ds(nil, "/etc/crio", "", "/etc/crio"), "/etc/crio/keys/synced"},
	} {
		if got := hostKeysDir(tc.ds); got != tc.want {
			t.Errorf("%s: hostKeysDir = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPlacement(t *testing.T) {
	t.Parallel()
	node := &corev1.Node{}
	node.Name = "n1"
	node.Labels = map[string]string{"zone": "a", "gpu": "yes"}
	node.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule},
		{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule},
		{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}}
	affinity := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, vals ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
	}
	tolerate := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "infra"}}
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want []string
	}{
		{"tolerates all", corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}, nil},
		{"no tolerations", corev1.PodSpec{}, []string{"taint dedicated=infra:NoSchedule is not tolerated"}},
		{"wrong value", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Value: "web"}}},
			[]string{"taint dedicated=infra:NoSchedule is not tolerated"}},
		{"wrong effect", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}},
			[]string{"taint dedicated=infra:NoSchedule is not tolerated"}},
		{"selector matches", corev1.PodSpec{Tolerations: tolerate, NodeSelector: map[string]string{"zone": "a"}}, nil},
		{"selector value differs", corev1.PodSpec{Tolerations: tolerate, NodeSelector: map[string]string{"zone": "b"}},
			[]string{"nodeSelector zone=b does not match (the node has zone=a)"}},
		{"affinity In matches", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity(expr("zone", corev1.NodeSelectorOpIn, "a", "b"))}, nil},
		{"affinity one of two terms", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity(expr("zone", corev1.NodeSelectorOpIn, "c"), expr("gpu", corev1.NodeSelectorOpExists))}, nil},
		{"affinity NotIn", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity(expr("zone", corev1.NodeSelectorOpNotIn, "a"))},
			[]string{"required node affinity (1 term(s)) does not match"}},
		{"affinity matchFields other node", corev1.PodSpec{Tolerations: tolerate, Affinity: affinity(corev1.NodeSelectorTerm{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}})},
			[]string{"required node affinity (1 term(s)) does not match"}},
	} {
		var r reasons
		placement(&tc.spec, node, &r)
		if len(r.found) != len(tc.want) {
			t.Errorf("%s: reasons %q, want %q", tc.name, r.found, tc.want)
			continue
		}
		for i := range tc.want {
			if !strings.Contains(r.found[i], tc.want[i]) {
				t.Errorf("%s: reason %q, want %q", tc.name, r.found[i], tc.want[i])
			}
		}
	}
	if termMatches(corev1.NodeSelectorTerm{}, "n1", labels.Set(node.Labels)) {
		t.Error("an empty term matched")
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    Verdict
		want string // "" = no problem
	}{
		{Verdict{Path: "synced", Type: TypeDir, Mode: 0o755}, ""},
		{Verdict{Path: "synced/k.pem", Type: TypeFile, Mode: 0o600, Accepted: true}, ""},
		{Verdict{Path: "synced/k.pem", Type: TypeFile, Mode: 0o640, Accepted: true}, "mode 0640"},
		{Verdict{Path: "synced/pub.pem", Type: TypeFile, Mode: 0o600}, "CRI-O cannot use it: not a private key"},
		{Verdict{Path: "README~", Type: TypeFile, Mode: 0o600, Accepted: true}, "temp or hidden file"},
		{Verdict{Path: "k.swp", Type: TypeFile, Mode: 0o600, Accepted: true}, "temp or hidden file"},
		{Verdict{Path: "l", Type: TypeSymlink}, "symbolic link"},
		{Verdict{Path: "fifo", Type: TypeOther}, "not a regular file"},
	} {
		problems, fix := judge(tc.v)
		got := strings.Join(problems, "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || (got != "" && fix == "") {
			t.Errorf("judge(%+v) = %q (fix %q), want %q", tc.v, got, fix, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	if got := redact("key abcd-secret and abcd-secret", []string{"abcd-secret"}); got != "key [REDACTED] and [REDACTED]" {
		t.Errorf("redact = %q", got)
	}
	if got := redact("a short key", []string{"a"}); got != "a short key" {
		t.Errorf("redact of a too short key changed the text: %q", got)
	}
}
