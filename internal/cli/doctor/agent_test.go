package doctor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	doctorcmd "github.com/keysync-dev/keysync/internal/cli/doctor"
	"github.com/keysync-dev/keysync/internal/doctor"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// agentAnswering is an agent transport that answers audit and crio-keys-path from fixed text
// (the protocol's lines), and records the crio-keys-path argument.
func agentAnswering(audit, keysPath string, gotDir *string) *nodedriver.Agent {
	return &nodedriver.Agent{Transport: nodedriver.TransportFunc(func(_ context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
		switch args[0] {
		case nodedriver.OpAudit:
			io.WriteString(stdout, audit)
			return 0, nil
		case nodedriver.OpCRIOKeysPath:
			if len(args) > 1 {
				*gotDir = args[1]
			}
			if keysPath == "" {
				fmt.Fprintln(stderr, "keysync-node-agent: unknown operation")
				return nodedriver.ExitUnsupported, nil
			}
			io.WriteString(stdout, keysPath)
			return 0, nil
		}
		return 1, nil
	})}
}

func TestAgentInspector(t *testing.T) {
	const sum = "0000000000000000000000000000000000000000000000000000000000000000"
	var audit strings.Builder
	if err := nodedriver.FormatAudit(&audit, []nodedriver.AuditEntry{
		{Entry: nodedriver.Entry{Path: "synced", Mode: 0o755, Type: nodedriver.TypeDir}, Verdict: nodedriver.VerdictOK},
		{Entry: nodedriver.Entry{Path: "synced/a.pem", Mode: 0o600, Size: 1700, Type: nodedriver.TypeFile}, SHA256: sum, Verdict: nodedriver.VerdictOK},
		{Entry: nodedriver.Entry{Path: "pub.pem", Mode: 0o644, Size: 451, Type: nodedriver.TypeFile}, SHA256: sum, Verdict: nodedriver.VerdictUnknownType},
		{Entry: nodedriver.Entry{Path: "link", Mode: 0o777, Type: nodedriver.TypeSymlink}, Verdict: nodedriver.VerdictSymlink},
	}); err != nil {
		t.Fatal(err)
	}
	var dir string
	insp := doctorcmd.AgentInspector{Agent: agentAnswering(audit.String(), "/var/lib/keys\t/host/crio-config/crio.conf.d/99-keys.conf\n", &dir)}
	got, err := insp.Audit(t.Context(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	want := []doctor.Verdict{
		{Path: "synced", Type: doctor.TypeDir, Mode: 0o755, Accepted: true},
		{Path: "synced/a.pem", Type: doctor.TypeFile, Mode: 0o600, Size: 1700, Accepted: true, SHA256: sum},
		{Path: "pub.pem", Type: doctor.TypeFile, Mode: 0o644, Size: 451, Why: nodedriver.VerdictUnknownType.Err().Error(), SHA256: sum},
		{Path: "link", Type: doctor.TypeSymlink, Mode: 0o777, Why: nodedriver.VerdictSymlink.Err().Error()},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Audit =\n%v\nwant\n%v", got, want)
	}
	p, err := insp.DecryptionKeysPath(t.Context(), "n1")
	if err != nil || p != "/var/lib/keys" || dir != "/host/crio-config" {
		t.Errorf("DecryptionKeysPath = %q, %v (asked for %q), want /var/lib/keys from /host/crio-config", p, err, dir)
	}
	old := doctorcmd.AgentInspector{Agent: agentAnswering("", "", &dir)}
	if _, err := old.DecryptionKeysPath(t.Context(), "n1"); err == nil || !strings.Contains(err.Error(), nodedriver.ErrUnsupported.Error()) {
		t.Errorf("an agent without crio-keys-path: err = %v, want unsupported", err)
	}
}

// A second doctor while another doctor (or run) holds the agent namespace's Lease: Deploy
// refuses with cluster.ErrBusy before it creates anything, and StartAgentInspector returns
// no cleanup (nothing of its own to wait for; the namespace is the live doctor's).
func TestStartAgentInspectorBusy(t *testing.T) {
	holder, secs := "doctor-1@h/1/x", int32(60)
	renewed := metav1.NewMicroTime(time.Now())
	cs := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: doctorcmd.AgentNamespace,
			Labels: map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: "doctor-1"}}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: cluster.LeaseName, Namespace: doctorcmd.AgentNamespace,
			Labels: map[string]string{names.LabelManagedBy: names.ManagedBy, names.LabelRunID: "doctor-1"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &renewed}})
	insp, cleanup, err := doctorcmd.StartAgentInspector(t.Context(), &rest.Config{Host: "https://127.0.0.1:1"}, cs, "img", time.Second, time.Second)
	if !errors.Is(err, cluster.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if insp != nil || cleanup != nil {
		t.Errorf("inspector %v, cleanup set: %v; want neither (nothing was created)", insp, cleanup != nil)
	}
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), doctorcmd.AgentNamespace, metav1.GetOptions{}); err != nil {
		t.Errorf("the live doctor's namespace: %v", err)
	}
}
