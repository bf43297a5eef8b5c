package conformance

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/internal/syncbuf"
	"github.com/keysync-dev/keysync/suites/internal/plant"
)

func labelled(ns, name, runID string) *corev1.Secret {
	l := map[string]string{names.LabelManagedBy: names.ManagedBy}
	if runID != "" {
		l[names.LabelRunID] = runID
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}}
}

func TestGuardInterrupt(t *testing.T) {
	tests := []struct {
		name string
		// fire stops the run the way the case says.
		fire     func(g *Guard) (stop func())
		wantCode int
		wantMsg  string
	}{
		{"SIGINT", func(g *Guard) func() { go g.Interrupt("received SIGINT", ExitSIGINT); return func() {} }, ExitSIGINT, "received SIGINT"},
		{"SIGTERM", func(g *Guard) func() { go g.Interrupt("received SIGTERM", ExitSIGTERM); return func() {} }, ExitSIGTERM, "received SIGTERM"},
		{"test timeout watchdog", func(g *Guard) func() { return g.Watch(200*time.Millisecond, 150*time.Millisecond) }, ExitTimeout, "-test.timeout 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(
				labelled(names.Namespace, "ks-run1-a", "run1-0a0b"),
				labelled("default", "ks-run1-b", "run1"),
				labelled(names.Namespace, "ks-run2-a", "run2"),
				labelled(names.Namespace, "unlabelled-run", ""),
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: names.Namespace, Name: names.KPConfigSecret}},
			)
			var stderr syncbuf.Buffer
			g, ctx := NewGuard(context.Background(), &stderr)
			g.settle = 10 * time.Millisecond
			exited := make(chan int, 1)
			g.exit = func(code int) { exited <- code }
			g.arm(cs, "run1")
			// What the run planted in a keys tree goes too: a key file and a symlink.
			root := t.TempDir()
			pl := plant.New(plant.Host{Stage: root})
			plantedFile, plantedLink := filepath.Join(root, "foreign.pem"), filepath.Join(root, "key.pem")
			if _, err := pl.File(context.Background(), "n", plantedFile, []byte("k")); err != nil {
				t.Fatal(err)
			}
			if _, err := pl.Symlink(context.Background(), "n", "../target", plantedLink); err != nil {
				t.Fatal(err)
			}
			g.armPlanter(pl)
			closed := 0
			closeFn := g.wrapClose(func() error { closed++; return nil })

			stop := tt.fire(g)
			defer stop()
			var code int
			select {
			case code = <-exited:
			case <-time.After(10 * time.Second):
				t.Fatalf("the guard did not end the run; stderr:\n%s", stderr.String())
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if ctx.Err() == nil {
				t.Error("the run's context was not cancelled")
			}
			if err := closeFn(); err != nil || closed != 1 {
				t.Errorf("node driver closed %d times (err %v), want once however often Close is called", closed, err)
			}
			list, err := cs.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, s := range list.Items {
				left = append(left, s.Name)
			}
			want := []string{"ks-run2-a", names.KPConfigSecret, "unlabelled-run"}
			if strings.Join(sorted(left), ",") != strings.Join(sorted(want), ",") {
				t.Errorf("after the interrupt the cluster holds %v, want %v (only run1's objects removed)", left, want)
			}
			for _, p := range []string{plantedFile, plantedLink} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("planted %s after the interrupt: %v, want it removed", p, err)
				}
			}
			out := stderr.String()
			for _, w := range []string{tt.wantMsg, "removed Secret default/ks-run1-b", "removed planted node n: symlink " + plantedLink, "FAIL: "} {
				if !strings.Contains(out, w) {
					t.Errorf("stderr lacks %q:\n%s", w, out)
				}
			}
			// A second signal while cleaning up is told so and does not exit again.
			g.Interrupt("received SIGINT", ExitSIGINT)
			select {
			case c := <-exited:
				t.Errorf("second interrupt exited again with %d", c)
			default:
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestTestTimeout(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want time.Duration
	}{
		{"no flag registered", nil, 0},
		{"set", []string{"-test.timeout=7m"}, 7 * time.Minute},
		{"zero: no timeout", []string{"-test.timeout=0"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			if tt.args != nil {
				fs.Duration("test.timeout", 10*time.Minute, "")
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if got := TestTimeout(fs); got != tt.want {
				t.Errorf("TestTimeout = %s, want %s", got, tt.want)
			}
		})
	}
	if m := CleanupMargin(30 * time.Minute); m != 2*time.Minute {
		t.Errorf("CleanupMargin(30m) = %s, want 2m", m)
	}
	if m := CleanupMargin(2 * time.Minute); m != 30*time.Second {
		t.Errorf("CleanupMargin(2m) = %s, want 30s", m)
	}
}

// Finish without an interrupt removes what the run left and keeps the run's exit code.
func TestGuardFinish(t *testing.T) {
	for _, code := range []int{0, 1} {
		cs := fake.NewClientset(labelled(names.Namespace, "ks-run1-a", "run1"), labelled(names.Namespace, "ks-run2-a", "run2"))
		g, _ := NewGuard(context.Background(), nil)
		g.arm(cs, "run1")
		closed := 0
		g.wrapClose(func() error { closed++; return nil })
		if got := g.Finish(context.Background(), code); got != code {
			t.Errorf("Finish(%d) = %d", code, got)
		}
		list, err := cs.CoreV1().Secrets(names.Namespace).List(context.Background(), metav1.ListOptions{})
		if err != nil || len(list.Items) != 1 || list.Items[0].Name != "ks-run2-a" || closed != 1 {
			t.Errorf("after Finish: %d Secrets (%v), closed %d times; want only run2's, closed once", len(list.Items), err, closed)
		}
	}
}

// removeFails is host ops whose Remove fails for one path.
type removeFails struct {
	plant.Host
	path string
}

func (o removeFails) Remove(ctx context.Context, node, p string) error {
	if p == o.path {
		return errors.New("permission denied")
	}
	return o.Host.Remove(ctx, node, p)
}

// TestGuardCleanupPlantedReport: the guard reports as removed only what it removed, and what is
// still planted as such, with the error.
func TestGuardCleanupPlantedReport(t *testing.T) {
	root := t.TempDir()
	gone, stuck := filepath.Join(root, "gone.pem"), filepath.Join(root, "stuck.pem")
	pl := plant.New(removeFails{Host: plant.Host{Stage: root}, path: stuck})
	for _, p := range []string{gone, stuck} {
		if _, err := pl.File(context.Background(), "n", p, []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	var stderr syncbuf.Buffer
	g, _ := NewGuard(context.Background(), &stderr)
	g.armPlanter(pl)
	if _, err := g.Cleanup(context.Background()); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Cleanup = %v, want the failed removal", err)
	}
	out := stderr.String()
	if !strings.Contains(out, "removed planted node n: file "+gone) {
		t.Errorf("stderr lacks the removal of %s:\n%s", gone, out)
	}
	if strings.Contains(out, "removed planted node n: file "+stuck) {
		t.Errorf("stderr claims %s was removed:\n%s", stuck, out)
	}
	if !strings.Contains(out, "still planted node n: file "+stuck) {
		t.Errorf("stderr does not say %s is still planted:\n%s", stuck, out)
	}
	if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v, want it removed", gone, err)
	}
}
