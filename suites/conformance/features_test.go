package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance/report"
)

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
