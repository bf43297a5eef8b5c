package cluster

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The agent reads keys and talks to CRI-O, nothing more: root for the 0600 files, not
// privileged, the keys tree's directory read-only, placed like the synchronizer.
func TestDaemonSet(t *testing.T) {
	o := Options{Image: "r/agent:1", CRISocket: "unix:///run/crio/crio.sock"}
	_ = o.defaults() // fills the paths; the missing client is Deploy's error
	ds := DaemonSet(o)
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	sc := c.SecurityContext
	checks := []struct {
		what string
		ok   bool
	}{
		{"namespace keysync-suites", ds.Namespace == DefaultNamespace},
		{"selector matches the pod labels", ds.Spec.Selector.MatchLabels[labelName] == AgentName && ds.Spec.Template.Labels[labelName] == AgentName},
		{"without a placement: every taint tolerated", len(spec.Tolerations) == 1 && spec.Tolerations[0].Operator == corev1.TolerationOpExists && spec.Tolerations[0].Key == ""},
		{"the agent image runs node-agent wait", c.Image == "r/agent:1" && c.Command[len(c.Command)-1] == "wait"},
		{"root, not privileged, no escalation, spc_t", *sc.RunAsUser == 0 && !*sc.Privileged && !*sc.AllowPrivilegeEscalation && sc.SELinuxOptions.Type == "spc_t"},
		{"no service account token", !*spec.AutomountServiceAccountToken},
		{"the keys tree's parent read-only, host to container", c.VolumeMounts[0].ReadOnly && *c.VolumeMounts[0].MountPropagation == corev1.MountPropagationHostToContainer &&
			spec.Volumes[0].HostPath.Path == "/etc/crio"},
		{"CRI-O's socket directory (unix:// dropped)", spec.Volumes[1].HostPath.Path == "/run/crio"},
		{"nothing is created on a node", *spec.Volumes[0].HostPath.Type == corev1.HostPathDirectory && *spec.Volumes[1].HostPath.Type == corev1.HostPathDirectory},
		{"node-agent's flags name the mounted paths", slices.Contains(c.Command, "/host/keys-parent/keys") && slices.Contains(c.Command, "unix:///host/cri/crio.sock")},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("agent DaemonSet: want %s", ch.what)
		}
	}
	// With the synchronizer's placement, the agent goes exactly where it goes.
	sync := corev1.PodSpec{NodeSelector: map[string]string{"pool": "gpu"},
		Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "images"}}}
	o.Placement = PlacementOf(sync)
	placed := DaemonSet(o).Spec.Template.Spec
	if placed.NodeSelector["pool"] != "gpu" || len(placed.Tolerations) != 1 || placed.Tolerations[0].Key != "dedicated" {
		t.Errorf("placement not copied: %+v %+v", placed.NodeSelector, placed.Tolerations)
	}
}

func TestAgentError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		stderr   string
		wantIs   error
		wantText string
	}{
		{"unsupported", utilexec.CodeExitError{Err: errors.New("x"), Code: nodedriver.ExitUnsupported}, "ERROR: no runtime\n", nodedriver.ErrUnsupported, "no runtime"},
		{"not found", utilexec.CodeExitError{Err: errors.New("x"), Code: nodedriver.ExitNotFound}, "ERROR: not found: synced/a.pem", fs.ErrNotExist, "synced/a.pem"},
		{"other exit status names the op and status", utilexec.CodeExitError{Err: errors.New("x"), Code: 137}, "", nil, "node-agent pull-image exited 137"},
		{"no exit status: the stream failed", errors.New("upgrade failed"), "", nil, "failed to exec node-agent pull-image in agent-x on node n1: upgrade failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := agentError("n1", "pull-image", "agent-x", tt.err, tt.stderr)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err %v is not %v", err, tt.wantIs)
			}
			if tt.wantIs == nil && (errors.Is(err, nodedriver.ErrUnsupported) || errors.Is(err, fs.ErrNotExist)) {
				t.Errorf("err %v maps to a contract error", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err %q, want %q", err, tt.wantText)
			}
		})
	}
}

// state sees only the current template's pods and only Ready nodes.
func TestState(t *testing.T) {
	ds := DaemonSet(Options{Namespace: DefaultNamespace, Image: "i"})
	ds.UID, ds.Generation = "ds-uid", 2
	ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3}
	node := func(name string, ready corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	pod := func(name, node, gen string, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DefaultNamespace,
			Labels:          map[string]string{labelName: AgentName, templateGenerationLabel: gen},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}},
			Spec:   corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	}
	cs := fake.NewClientset(ds,
		node("a", corev1.ConditionTrue), node("b", corev1.ConditionTrue), node("c", corev1.ConditionFalse),
		pod("p-a", "a", "2", corev1.ConditionTrue),
		pod("p-b", "b", "2", corev1.ConditionFalse),
		pod("old-b", "b", "1", corev1.ConditionTrue), // an earlier run's, still there
		pod("p-c", "c", "2", corev1.ConditionFalse),
	)
	d := &Driver{opts: Options{Client: cs, Namespace: DefaultNamespace}}
	st, err := d.state(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.rolledOut || !slices.Equal(st.ready, []string{"a"}) || !slices.Equal(st.waiting, []string{"b"}) || !slices.Equal(st.notReady, []string{"c"}) {
		t.Fatalf("state = %s; want ready [a], waiting [b], not Ready [c]", st)
	}
	nodes, err := d.Nodes(context.Background())
	if err != nil || !slices.Equal(nodes, []string{"a"}) {
		t.Fatalf("Nodes = %v, %v; want [a]", nodes, err)
	}
}

// Close removes what Deploy made: the namespace it created, else only the DaemonSet.
func TestClose(t *testing.T) {
	for _, created := range []bool{true, false} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultNamespace}}
		cs := fake.NewClientset(ns, DaemonSet(Options{Namespace: DefaultNamespace, Image: "i"}))
		d := &Driver{opts: Options{Client: cs, Namespace: DefaultNamespace}, createdNS: created}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		_, nsErr := cs.CoreV1().Namespaces().Get(context.Background(), DefaultNamespace, metav1.GetOptions{})
		_, dsErr := cs.AppsV1().DaemonSets(DefaultNamespace).Get(context.Background(), AgentName, metav1.GetOptions{})
		if created != apierrors.IsNotFound(nsErr) {
			t.Errorf("created %v: namespace deleted = %v", created, apierrors.IsNotFound(nsErr))
		}
		if !created && !apierrors.IsNotFound(dsErr) {
			t.Errorf("the DaemonSet is still there: %v", dsErr)
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
		{"relative keys root", Options{Client: fake.NewClientset(), Config: &rest.Config{}, Image: "i", KeysRoot: "keys"}, "must be absolute paths"},
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
			if !slices.Equal(img.Entrypoint, []string{AgentBinary, "node-agent", "wait"}) {
				t.Errorf("entrypoint %q", img.Entrypoint)
			}
		})
	}
}
