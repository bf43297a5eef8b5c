package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/names"
)

func TestCleanupCommand(t *testing.T) {
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lbl := func(runID string) map[string]string {
		return map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: runID}
	}
	for _, n := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: names.Namespace}},
		// A killed run's agent namespace, and the customer's own.
		{ObjectMeta: metav1.ObjectMeta{Name: "keysync-suites", Labels: lbl("dead1")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "prod"}},
		// A run that is still going: its agent namespace holds its live Lease.
		{ObjectMeta: metav1.ObjectMeta{Name: "busy"}},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: names.Namespace, Name: "ks-dead1-key", Labels: lbl("dead1-ab12")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: names.Namespace, Name: "ks-dead2-key", Labels: lbl("dead2")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: names.Namespace, Name: names.KPConfigSecret}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "prod-key"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: names.Namespace, Name: "ks-live1-key", Labels: lbl("live1")}},
	} {
		if _, err := cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	holder, secs, renewed := "live1@h/1/x", int32(3600), metav1.NewMicroTime(time.Now())
	if _, err := cs.CoordinationV1().Leases("busy").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "keysync-node-agent", Labels: lbl("live1")},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renewed}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exists := func(ns, name string) bool {
		t.Helper()
		if ns == "" {
			n, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false
			}
			return err == nil && n.DeletionTimestamp == nil
		}
		_, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}
	kc := srv.KubeconfigPath
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  string
		// after: objects that must (true) or must not (false) exist afterwards.
		after map[[2]string]bool
	}{
		{name: "no kubeconfig", args: []string{"--kubeconfig", ""}, wantCode: 1, wantErr: "no --kubeconfig"},
		{
			name: "dry run lists, removes nothing", args: []string{"--kubeconfig", kc, "--dry-run"},
			wantOut: []string{"would remove Secret image-key-synchronizer/ks-dead1-key", "would remove Secret image-key-synchronizer/ks-dead2-key", "would remove Namespace keysync-suites"},
			after:   map[[2]string]bool{{names.Namespace, "ks-dead1-key"}: true, {"", "keysync-suites"}: true},
		},
		{
			name: "one run", args: []string{"--kubeconfig", kc, "--run-id", "dead1"},
			wantOut: []string{"removed Secret image-key-synchronizer/ks-dead1-key", "removed Namespace keysync-suites"},
			after: map[[2]string]bool{{names.Namespace, "ks-dead1-key"}: false, {"", "keysync-suites"}: false,
				{names.Namespace, "ks-dead2-key"}: true, {names.Namespace, names.KPConfigSecret}: true},
		},
		{
			name: "every run; unlabelled objects and a live run's stay", args: []string{"--kubeconfig", kc},
			wantOut: []string{"removed Secret image-key-synchronizer/ks-dead2-key"},
			wantErr: `skipped Secret image-key-synchronizer/ks-live1-key: run "live1" is live: its Lease busy/keysync-node-agent was renewed`,
			after: map[[2]string]bool{{names.Namespace, "ks-dead2-key"}: false, {names.Namespace, names.KPConfigSecret}: true,
				{"prod", "prod-key"}: true, {"", "prod"}: true, {"", names.Namespace}: true, {names.Namespace, "ks-live1-key"}: true},
		},
		{
			name: "nothing left", args: []string{"--kubeconfig", kc},
			wantErr: "removed 0 object(s)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append([]string{"conformance", "cleanup"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w+"\n") {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errOut)
			}
			for k, want := range tt.after {
				if got := exists(k[0], k[1]); got != want {
					t.Errorf("%s/%s exists = %v, want %v", k[0], k[1], got, want)
				}
			}
		})
	}
}
