package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/suites/conformance/report"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// emptyNode is a node driver of one node whose keys tree stays empty: the synchronizer never
// writes, so every wait for a key file times out (the feature fails mid-way).
type emptyNode struct{}

func (emptyNode) Name() string                                    { return "empty" }
func (emptyNode) Nodes(context.Context) ([]string, error)         { return []string{"n1"}, nil }
func (emptyNode) PullImage(context.Context, string, string) error { return nil }
func (emptyNode) RunImage(context.Context, string, string) (string, error) {
	return "", nodedriver.ErrUnsupported
}
func (emptyNode) ListKeys(context.Context, string) ([]nodedriver.Entry, error) { return nil, nil }
func (emptyNode) ReadKey(context.Context, string, string) ([]byte, error)      { return nil, nil }
func (emptyNode) AuditKeys(context.Context, string) ([]nodedriver.AuditEntry, error) {
	return nil, nil
}

// kpConfigWrites are the API calls that changed keyprotect-config.
func kpConfigWrites(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		if a.GetResource().Resource != "secrets" || a.GetVerb() == "get" || a.GetVerb() == "list" || a.GetVerb() == "watch" {
			continue
		}
		name := ""
		switch a := a.(type) {
		case k8stesting.CreateAction:
			name = a.GetObject().(*corev1.Secret).Name
		case k8stesting.UpdateAction:
			name = a.GetObject().(*corev1.Secret).Name
		case k8stesting.DeleteAction:
			name = a.GetName()
		case k8stesting.PatchAction:
			name = a.GetName()
		}
		if name == names.KPConfigSecret {
			out = append(out, a.GetVerb())
		}
	}
	return out
}

// The live configuration is never changed: where keyprotect-config exists, the kp features
// skip without the --kp-* settings (saying which), use the cluster's own Key Protect with
// them, and never write the Secret, even when they fail mid-feature. Only where none exists do
// they create one (mockkp's) and remove it again.
func TestKPNeverChangesLiveConfig(t *testing.T) {
	kpEnv := mockkptest.Start(t)
	labEnv := lab.Env{Lab: lab.KindKind, Capabilities: []lab.Capability{lab.CapCluster, lab.CapMockKP},
		MockKPURL: kpEnv.URL, MockKPTokenURL: kpEnv.TokenURL, MockKPAdminURL: kpEnv.AdminURL,
		KPInstanceID: kpEnv.InstanceID, KPAPIKey: kpEnv.APIKey, KPRootKeyID: kpEnv.RootKeyID}
	live := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.KPConfigSecret, Namespace: names.Namespace, ResourceVersion: "42"},
		Data: map[string][]byte{"config.json": []byte(`{"keyprotect-url":"https://kp.example","instance-id":"i","apikey":"customer-secret"}`)}}
	liveKP := LiveKP{RootKeyID: kpEnv.RootKeyID, URL: kpEnv.URL, InstanceID: kpEnv.InstanceID,
		TokenURL: kpEnv.TokenURL, APIKey: kpEnv.APIKey, allowHTTP: true}
	fx := Fixtures{A: Image{Name: "a", Ref: "r/a:1", Key: ecPEM(t, false)}}
	tests := []struct {
		name       string
		existing   bool
		kp         LiveKP
		want       map[string]report.Status // "feature/step" → status
		wantSkip   string                   // in the kp feature's setup skip message
		wantWrites []string
	}{
		{name: "live config, no --kp-* settings: kp-key skips and says why; bad-input uses it untouched", existing: true,
			// A skipped setup is no case of its own: every check of the feature is skipped with
			// its reason.
			want:     map[string]report.Status{"kp/the unwrapped key file appears on every node": report.Skipped, "bad/setup": report.Failed},
			wantSkip: "--kp-root-key-id, the API key ($KEYSYNC_KP_APIKEY or --kp-apikey-file), --kp-url, --kp-instance-id"},
		{name: "live config with the settings: wrapped with the cluster's Key Protect, the Secret untouched", existing: true, kp: liveKP,
			want: map[string]report.Status{"kp/the unwrapped key file appears on every node": report.Failed}},
		{name: "no config (a lab): mockkp's is created and removed, also when the feature fails",
			want:       map[string]report.Status{"kp/the unwrapped key file appears on every node": report.Failed},
			wantWrites: []string{"create", "delete", "create", "delete"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tt.existing {
				cs = fake.NewClientset(live.DeepCopy())
			}
			c := &Context{Lab: labEnv, Client: cs, Driver: emptyNode{}, Fixtures: fx, RunID: "t", Namespace: names.Namespace,
				KP: tt.kp, SyncTimeout: 300 * time.Millisecond, PollInterval: 50 * time.Millisecond}
			kpF, badF := featureKPKey(), featureBadInput()
			kpF.Name, badF.Name = "kp", "bad"
			got := map[string]report.Case{}
			cases, _ := Run(context.Background(), c, []Feature{kpF, badF}, RunOptions{})
			for _, rc := range cases {
				got[rc.Suite+"/"+rc.Name] = rc
			}
			for k, want := range tt.want {
				if got[k].Status != want {
					t.Errorf("%s: %s (%s), want %s", k, got[k].Status, got[k].Message, want)
				}
			}
			if msg := got["kp/the unwrapped key file appears on every node"].Message; tt.wantSkip != "" && !strings.Contains(msg, tt.wantSkip) {
				t.Errorf("skip message %q lacks %q", msg, tt.wantSkip)
			}
			if _, ok := got["kp/setup"]; ok && tt.wantSkip == "" {
				t.Errorf("kp/setup reported as a case (%s): a setup that passed is not a check", got["kp/setup"].Status)
			}
			if w := kpConfigWrites(cs); strings.Join(w, ",") != strings.Join(tt.wantWrites, ",") {
				t.Errorf("writes to keyprotect-config: %v, want %v", w, tt.wantWrites)
			}
			cur, err := cs.CoreV1().Secrets(names.Namespace).Get(context.Background(), names.KPConfigSecret, metav1.GetOptions{})
			switch {
			case tt.existing && (err != nil || cur.ResourceVersion != "42" || string(cur.Data["config.json"]) != string(live.Data["config.json"])):
				t.Errorf("the live keyprotect-config changed: %+v, %v", cur, err)
			case !tt.existing && err == nil:
				t.Errorf("the run's keyprotect-config was left behind")
			}
			for k, rc := range got {
				if strings.Contains(rc.Message, "customer-secret") {
					t.Errorf("%s: the live API key is in a message: %q", k, rc.Message)
				}
			}
		})
	}
}

// TestKPConfigForTheSynchronizer: with kp-public-names the keyprotect-config holds the
// runbook's fields only (the public URL, no token-url); otherwise mockkp's cluster URLs.
func TestKPConfigForTheSynchronizer(t *testing.T) {
	base := lab.Env{MockKPURL: "http://127.0.0.1:1", MockKPTokenURL: "http://127.0.0.1:1/identity/token",
		MockKPClusterURL: "http://10.0.0.5:8080", MockKPClusterTokenURL: "http://10.0.0.5:8080/identity/token",
		KPInstanceID: "inst", KPAPIKey: "key", Capabilities: []lab.Capability{lab.CapMockKP}}
	public := base
	public.Capabilities = append(public.Capabilities, lab.CapKPPublicNames)
	public.KPPublicURL = "https://us-south.kms.cloud.ibm.com"
	noCluster := base
	noCluster.MockKPClusterURL, noCluster.MockKPClusterTokenURL = "", ""
	cases := []struct {
		name          string
		env           lab.Env
		url, tokenURL string
	}{
		{"mockkp as the cluster reaches it", base, "http://10.0.0.5:8080", "http://10.0.0.5:8080/identity/token"},
		{"public names: the runbook's fields only", public, "https://us-south.kms.cloud.ibm.com", ""},
		{"no cluster URL: mockkp as the runner reaches it", noCluster, "http://127.0.0.1:1", "http://127.0.0.1:1/identity/token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := (&Context{Lab: tc.env}).kpConfig()
			if cfg.URL != tc.url || cfg.TokenURL != tc.tokenURL || cfg.InstanceID != "inst" || cfg.APIKey != "key" {
				t.Errorf("kpConfig = URL %q token-url %q instance %q, want %q %q inst", cfg.URL, cfg.TokenURL, cfg.InstanceID, tc.url, tc.tokenURL)
			}
		})
	}
}
