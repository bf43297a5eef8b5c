package conformance

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// Features a lab cannot run skip, naming the capability they need and the labs that have it.
func TestFeaturesSkipWithoutCapability(t *testing.T) {
	tests := []struct {
		name     string
		env      lab.Env
		features []Feature
		want     []string // in every setup's skip message
	}{
		{"no cluster (an old node lab env file)", withDefaultCapabilities(lab.Env{Lab: lab.KindNode}),
			[]Feature{featureAddon(), featurePod(), featureNetwork(), featureIsolation(), featureResilience()},
			[]string{"capability cluster", "the kind lab", "KEYSYNC_LAB=node", "CAPABILITIES=isolated,mockkp,run-image,plant"}},
		{"nothing to plant with on any cluster", withDefaultCapabilities(lab.Env{Lab: lab.KindCluster}),
			[]Feature{featureForeignFiles(), featureForeignSymlink()}, []string{"capability plant", "read-only on the keys tree", "CAPABILITIES=cluster,run-image"}},
		{"plant claimed without a node access that can", lab.Env{Lab: lab.KindCluster, NodeAccess: lab.AccessPod, Capabilities: []lab.Capability{lab.CapPlant}},
			[]Feature{featureForeignFiles(), featureForeignSymlink()}, []string{"planting needs NODE_ACCESS host or docker", "by pod"}},
		{"a cluster that is not isolated", lab.Env{Lab: lab.KindCluster, Capabilities: []lab.Capability{lab.CapCluster}},
			[]Feature{featureIsolation()}, []string{"capability isolated", "the node and kind labs"}},
		{"no mockkp (an old cluster env file without Key Protect)", withDefaultCapabilities(lab.Env{Lab: lab.KindCluster}),
			[]Feature{featureKPKey(), featureBadInput()}, []string{"capability mockkp", "--mockkp-from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Context{Lab: tt.env, RunID: "test", Client: fake.NewClientset()}
			cases, _ := Run(context.Background(), c, tt.features, RunOptions{})
			setups, seen := 0, map[string]bool{}
			for _, rc := range cases {
				if rc.Status != report.Skipped {
					t.Errorf("%s/%s: status %s, want skipped (%s)", rc.Suite, rc.Name, rc.Status, rc.Message)
				}
				// Every check is reported skipped with the setup's reason.
				if !seen[rc.Suite] {
					seen[rc.Suite] = true
					setups++
				}
				for _, w := range tt.want {
					if !strings.Contains(rc.Message, w) {
						t.Errorf("%s: skip message %q lacks %q", rc.Suite, rc.Message, w)
					}
				}
			}
			if setups != len(tt.features) {
				t.Errorf("%d features reported, want %d", setups, len(tt.features))
			}
		})
	}
}

// The Key Protect features fail (not skip) on a lab that claims mockkp but lacks its settings.
func TestKPFeatureFailsWithoutSettings(t *testing.T) {
	c := &Context{Lab: lab.Env{Lab: lab.KindKind, Capabilities: []lab.Capability{lab.CapCluster, lab.CapMockKP}}, RunID: "test", Client: fake.NewClientset()}
	cases, _ := Run(context.Background(), c, []Feature{featureKPKey()}, RunOptions{})
	setups := 0
	for _, rc := range cases {
		if rc.Name != "setup" {
			continue
		}
		setups++
		if rc.Status != report.Failed || !strings.Contains(rc.Message, "KP_ROOT_KEY_ID") {
			t.Errorf("setup: %s %q, want failed naming the missing keys", rc.Status, rc.Message)
		}
	}
	if setups != 1 {
		t.Errorf("%d setup case(s) in %v, want the failed setup", setups, cases)
	}
}

func TestWithDefaultCapabilities(t *testing.T) {
	kp := lab.Env{MockKPURL: "u", MockKPAdminURL: "a", KPInstanceID: "i", KPAPIKey: "k", KPRootKeyID: "r"}
	with := func(e lab.Env, kind string) lab.Env { e.Lab = kind; return e }
	tests := []struct {
		name string
		env  lab.Env
		want string
	}{
		{"node lab", lab.Env{Lab: lab.KindNode}, "isolated,mockkp,run-image,plant"},
		{"kind lab", lab.Env{Lab: lab.KindKind}, "cluster,isolated,mockkp,run-image,plant"},
		{"kind lab with node commands", lab.Env{Lab: lab.KindKind, AddNodeCmd: "add", RemoveNodeCmd: "rm"}, "cluster,isolated,mockkp,run-image,plant,add-node"},
		{"cluster", lab.Env{Lab: lab.KindCluster}, "cluster,run-image"},
		{"cluster with a mockkp", with(kp, lab.KindCluster), "cluster,run-image,mockkp"},
		{"cluster with part of a mockkp", lab.Env{Lab: lab.KindCluster, MockKPURL: "u"}, "cluster,run-image"},
		{"named capabilities are kept as they are", lab.Env{Lab: lab.KindKind, Capabilities: []lab.Capability{lab.CapCluster}}, "cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capList(withDefaultCapabilities(tt.env).Capabilities); got != tt.want {
				t.Errorf("capabilities %s, want %s", got, tt.want)
			}
		})
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
	// Non-disruptive features have no such label and are kept by --skip-labels disruptive=true;
	// besides resilience only the faults that kill the synchronizer or restart kube-apiserver
	// are disruptive.
	for _, f := range Features() {
		if f.Area != AreaResilience && (f.Area != AreaFaults || f.Label(LabelDisruptive) != "true") {
			if _, ok := selected(f, RunOptions{SkipLabels: map[string][]string{LabelDisruptive: {"true"}}}); !ok {
				t.Errorf("feature %q was skipped by disruptive=true", f.Name)
			}
		}
	}
}
