package conformance

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance/report"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// treeDriver is a one-node driver whose tree holds one key file (judged here: it reads bytes,
// which the diagnostics must not print).
type treeDriver struct{ key []byte }

func (treeDriver) Name() string                                    { return "tree" }
func (treeDriver) Nodes(context.Context) ([]string, error)         { return []string{"n1"}, nil }
func (treeDriver) PullImage(context.Context, string, string) error { return nil }
func (treeDriver) RunImage(context.Context, string, string) (string, error) {
	return "", nodedriver.ErrUnsupported
}
func (d treeDriver) ListKeys(context.Context, string) ([]nodedriver.Entry, error) {
	return []nodedriver.Entry{{Path: "synced/a.pem", Type: nodedriver.TypeFile, Mode: 0o644, Size: int64(len(d.key))}}, nil
}
func (d treeDriver) ReadKey(_ context.Context, _, p string) ([]byte, error) {
	if p != "synced/a.pem" {
		return nil, fs.ErrNotExist
	}
	return d.key, nil
}

func TestRunProfiles(t *testing.T) {
	t.Parallel()
	pass := func(context.Context, T, *Context) {}
	fatal := func(_ context.Context, t T, _ *Context) { t.Fatalf("broken") }
	soft := func(_ context.Context, t T, _ *Context) { t.Errorf("soft") }
	f := Feature{Name: "f", Area: AreaPlain, Assess: []Step{
		{Name: "core", Profile: ProfileRequired, Fn: pass},
		{Name: "event", Profile: ProfileRecommended, Fn: fatal}, // must not hide the next ones
		{Name: "pulls", Profile: ProfileRequired, Fn: pass},
		{Name: "rotates", Profile: ProfileRequired, Fn: fatal}, // stops the dependent ones
		{Name: "old key fails", Profile: ProfileRequired, Fn: pass},
		{Name: "mode", Profile: ProfileRecommended, Fn: pass},
		{Name: "hygiene", Profile: ProfileRequired, Independent: true, Fn: pass},
		{Name: "modes", Profile: ProfileRecommended, Independent: true, Fn: soft},
		{Name: "soft required", Profile: ProfileRequired, Independent: true, Fn: soft},
		{Name: "after soft", Profile: ProfileRequired, Independent: true, Fn: pass},
	}}
	tests := []struct {
		profile Profile
		want    string
		summary string
	}{
		{ProfileRecommended, "pass fail pass fail skip skip pass fail fail pass",
			"required: 4 passed, 2 failed, 1 skipped; recommended: 0 passed, 0 warned, 2 failed, 1 skipped"},
		{ProfileRequired, "pass warn pass fail skip skip pass warn fail pass",
			"required: 4 passed, 2 failed, 1 skipped; recommended: 0 passed, 2 warned, 0 failed, 1 skipped"},
		{"", "pass fail pass fail skip skip pass fail fail pass", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.profile), func(t *testing.T) {
			var progress strings.Builder
			c := &Context{Profile: tt.profile}
			cases, _ := Run(context.Background(), c, []Feature{f}, RunOptions{Progress: &progress})
			var got []string
			for _, rc := range cases {
				got = append(got, string(rc.Status))
				if rc.Area != string(AreaPlain) || rc.Profile == "" {
					t.Errorf("%s: area %q profile %q", rc.Name, rc.Area, rc.Profile)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Fatalf("statuses %s\nwant     %s", g, tt.want)
			}
			if tt.summary != "" && report.ProfileSummary(cases) != tt.summary {
				t.Errorf("summary %q, want %q", report.ProfileSummary(cases), tt.summary)
			}
			if !strings.Contains(cases[4].Message, `required assessment "rotates" failed`) {
				t.Errorf("dependent skip does not say why: %q", cases[4].Message)
			}
			if tt.profile == ProfileRequired && !strings.Contains(progress.String(), "WARN recommended: broken") {
				t.Errorf("progress lacks the warning:\n%s", progress.String())
			}
		})
	}
}

func TestDiagnose(t *testing.T) {
	t.Parallel()
	key := []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
	cs := fake.NewSimpleClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "addon-x", Namespace: "sync"},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "syncer"}}}},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "sync"}, Type: "Warning", Reason: "KeyRejected",
			InvolvedObject: corev1.ObjectReference{Kind: "Secret", Name: "ks-r1-bad"}, Message: "not a private key"},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e2", Namespace: podNamespace}, Type: "Warning", Reason: "Failed",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "ks-r1-pod"}, Message: "missing private key needed for decryption"},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e3", Namespace: podNamespace}, Reason: "Pulled",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "someone-else"}},
	)
	c := &Context{Client: cs, Driver: treeDriver{key: key}, Namespace: "sync", RunID: "r1", Lab: lab.Env{Lab: lab.KindKind}}
	got := c.diagnose(context.Background())
	for _, want := range []string{
		"log of pod sync/addon-x container syncer on node n1",
		"Warning KeyRejected Secret/ks-r1-bad: not a private key",
		"Events of this run's Pods", "Pod/ks-r1-pod: missing private key",
		"keys tree of node n1", "synced/a.pem", "0644", nodedriver.SHA256Hex(key),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "someone-else") || strings.Contains(got, "c2VjcmV0") {
		t.Errorf("diagnostics hold another run's Events or key bytes:\n%s", got)
	}
}

func TestRedactKeys(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"a\n-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\nb", "a\n[private key redacted]\nb"},
		{"cut -----BEGIN PRIVATE KEY-----\nAAAA", "cut [private key redacted]"},
		{"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
	}
	for _, tt := range tests {
		if got := redactKeys(tt.in); got != tt.want {
			t.Errorf("redactKeys(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSyncerLogFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  lab.Env
		want string
	}{
		{lab.Env{Lab: lab.KindNode, Extra: map[string]string{"SYNCER_LOG": "/l/syncer.log"}}, "/l/syncer.log"},
		{lab.Env{Lab: lab.KindNode, Extra: map[string]string{"NODE_LAB_LOGS": "/l"}}, "/l/syncer.log"},
		{lab.Env{Lab: lab.KindKind, Extra: map[string]string{"SYNCER_LOG": "/l/syncer.log"}}, ""},
		{lab.Env{Lab: lab.KindNode}, ""},
	}
	for _, tt := range tests {
		if got := (&Context{Lab: tt.env}).syncerLogFile(); got != tt.want {
			t.Errorf("syncerLogFile(%+v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestParseProfile(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Profile{"": DefaultProfile, "required": ProfileRequired, "recommended": ProfileRecommended} {
		if got, err := ParseProfile(in); err != nil || got != want {
			t.Errorf("ParseProfile(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"Required", "all", "strict"} {
		if _, err := ParseProfile(bad); err == nil || !strings.Contains(err.Error(), "required, recommended") {
			t.Errorf("ParseProfile(%q) = %v, want an error naming the profiles", bad, err)
		}
	}
}
