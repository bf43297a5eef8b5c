package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/fixtures"
)

// The agent reads keys and talks to CRI-O, nothing more: root for the 0600 files, not
// privileged, the keys tree read-only, every node (taints tolerated).
func TestDaemonSet(t *testing.T) {
	o := Options{Image: "r/agent:1"}
	_ = o.defaults() // fills the paths; the missing client is Deploy's error
	ds := DaemonSet(o)
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	checks := []struct {
		what string
		ok   bool
	}{
		{"namespace keysync-suites", ds.Namespace == DefaultNamespace},
		{"selector matches the pod labels", ds.Spec.Selector.MatchLabels[labelName] == AgentName && ds.Spec.Template.Labels[labelName] == AgentName},
		{"tolerates every taint", len(spec.Tolerations) == 1 && spec.Tolerations[0].Operator == corev1.TolerationOpExists && spec.Tolerations[0].Key == ""},
		{"the agent image runs node-agent wait", c.Image == "r/agent:1" && slices.Equal(c.Command, AgentArgs("wait"))},
		{"root, not privileged, no escalation", *c.SecurityContext.RunAsUser == 0 && !*c.SecurityContext.Privileged && !*c.SecurityContext.AllowPrivilegeEscalation},
		{"no service account token", !*spec.AutomountServiceAccountToken},
		{"keys tree read-only from CRI-O's default path", c.VolumeMounts[0].ReadOnly && spec.Volumes[0].HostPath.Path == DefaultKeysRoot},
		{"the keys tree is never created on a node", *spec.Volumes[0].HostPath.Type == corev1.HostPathUnset},
		{"CRI-O's socket", spec.Volumes[1].HostPath.Path == DefaultCRISocket && *spec.Volumes[1].HostPath.Type == corev1.HostPathSocket},
		{"node-agent's flags name the mounts", slices.Contains(c.Command, c.VolumeMounts[0].MountPath) && slices.Contains(c.Command, "unix://"+c.VolumeMounts[1].MountPath)},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("agent DaemonSet: want %s", ch.what)
		}
	}
}

func TestDeployNeedsClientAndImage(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no client", Options{Image: "x"}, "client and its rest config are required"},
		{"no image", Options{Client: fake.NewClientset(), Config: &rest.Config{}}, "no agent image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Deploy(context.Background(), tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Deploy err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAgentImage(t *testing.T) {
	static, err := fixtures.BuildMarker(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	staticPath := filepath.Join(dir, "static")
	if err := os.WriteFile(staticPath, static, 0o755); err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"static linux/amd64", staticPath, ""},
		{"dynamically linked", "/bin/ls", "dynamically linked"},
		{"not a program", notELF, "not an ELF program"},
		{"missing", filepath.Join(dir, "absent"), "not an ELF program"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := AgentImage(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tag, err := TagOf(img)
			if err != nil || len(tag) != 12 {
				t.Fatalf("TagOf = %q, %v", tag, err)
			}
			again, _ := AgentImage(tt.path)
			if tag2, _ := TagOf(again); tag2 != tag {
				t.Errorf("tag not reproducible: %s then %s", tag, tag2)
			}
			if !slices.Equal(img.Entrypoint, AgentArgs("wait")) {
				t.Errorf("entrypoint %q", img.Entrypoint)
			}
		})
	}
}
