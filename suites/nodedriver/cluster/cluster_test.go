package cluster

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The agent reads keys and talks to CRI-O, nothing more: root with every capability dropped
// but DAC_READ_SEARCH, not privileged, RuntimeDefault seccomp, read-only root filesystem, no
// SELinux type unless asked, the keys tree's directory read-only, the CRI socket file only,
// placed like the synchronizer.
func TestDaemonSet(t *testing.T) {
	o := Options{Image: "r/agent:1", CRISocket: "unix:///run/crio/crio.sock"}
	_ = o.defaults() // fills the paths; the missing client is Deploy's error
	ds := DaemonSet(o)
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	sc := c.SecurityContext
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]*corev1.HostPathVolumeSource{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v.HostPath
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"namespace keysync-suites", ds.Namespace == DefaultNamespace},
		{"selector matches the pod labels", ds.Spec.Selector.MatchLabels[labelName] == AgentName && ds.Spec.Template.Labels[labelName] == AgentName},
		{"without a placement: every taint tolerated", len(spec.Tolerations) == 1 && spec.Tolerations[0].Operator == corev1.TolerationOpExists && spec.Tolerations[0].Key == ""},
		{"the agent image runs node-agent wait", c.Image == "r/agent:1" && c.Command[len(c.Command)-1] == "wait"},
		{"root, not privileged, no escalation", *sc.RunAsUser == 0 && !*sc.Privileged && !*sc.AllowPrivilegeEscalation},
		{"every capability dropped", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})},
		{"only DAC_READ_SEARCH added", slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"})},
		{"seccomp RuntimeDefault (container and pod)", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault &&
			spec.SecurityContext != nil && spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"read-only root filesystem", *sc.ReadOnlyRootFilesystem},
		{"no SELinux type by default (no spc_t)", sc.SELinuxOptions == nil && spec.SecurityContext.SELinuxOptions == nil},
		{"no host namespaces", !spec.HostPID && !spec.HostNetwork && !spec.HostIPC},
		{"no service account token", !*spec.AutomountServiceAccountToken},
		{"exactly two volumes and two mounts", len(spec.Volumes) == 2 && len(c.VolumeMounts) == 2},
		{"the keys tree's parent read-only, host to container", mounts["keys-parent"].ReadOnly && *mounts["keys-parent"].MountPropagation == corev1.MountPropagationHostToContainer &&
			vols["keys-parent"] != nil && vols["keys-parent"].Path == "/etc/crio" && *vols["keys-parent"].Type == corev1.HostPathDirectory},
		{"CRI-O's socket file, not its directory (unix:// dropped)", vols["cri-socket"] != nil && vols["cri-socket"].Path == "/run/crio/crio.sock" &&
			*vols["cri-socket"].Type == corev1.HostPathSocket && mounts["cri-socket"].MountPath == "/host/cri/crio.sock"},
		{"node-agent's flags name the mounted paths", slices.Contains(c.Command, "/host/keys-parent/keys") && slices.Contains(c.Command, "unix:///host/cri/crio.sock")},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("agent DaemonSet: want %s", ch.what)
		}
	}
	// On nodes that enforce SELinux, the type asked for.
	o.SELinuxType = "spc_t"
	if got := DaemonSet(o).Spec.Template.Spec.Containers[0].SecurityContext.SELinuxOptions; got == nil || got.Type != "spc_t" {
		t.Errorf("SELinuxType spc_t: got %+v", got)
	}
	o.SELinuxType = ""
	// With the synchronizer's placement, the agent goes exactly where it goes.
	sync := corev1.PodSpec{NodeSelector: map[string]string{"pool": "gpu"},
		Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "images"}}}
	o.Placement = PlacementOf(sync)
	placed := DaemonSet(o).Spec.Template.Spec
	if placed.NodeSelector["pool"] != "gpu" || len(placed.Tolerations) != 1 || placed.Tolerations[0].Key != "dedicated" {
		t.Errorf("placement not copied: %+v %+v", placed.NodeSelector, placed.Tolerations)
	}
}

// PodExec frames the agent's command line for the pod and maps an exec's outcome: an exit
// status is the agent's (the contract's mapping is nodedriver.Agent's), anything else is the
// transport's failure. The contract test (suites/nodedriver/contract) drives the same code
// with the real agent binary.
func TestPodExec(t *testing.T) {
	tests := []struct {
		name     string
		execErr  error
		podErr   error
		wantCode int
		wantErr  string
	}{
		{name: "success", wantCode: 0},
		{name: "unsupported", execErr: utilexec.CodeExitError{Err: errors.New("x"), Code: nodedriver.ExitUnsupported}, wantCode: nodedriver.ExitUnsupported},
		{name: "killed", execErr: utilexec.CodeExitError{Err: errors.New("x"), Code: 137}, wantCode: 137},
		{name: "the stream failed", execErr: errors.New("upgrade failed"), wantErr: "failed to exec the node agent in pod agent-x: upgrade failed"},
		{name: "no pod", podErr: errors.New("no ready pod"), wantErr: "no ready pod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPod string
			var gotCmd []string
			p := &PodExec{KeysRoot: "/etc/crio/keys", CRISocket: "unix:///run/crio/crio.sock",
				Pod: func(_ context.Context, node string) (string, error) { return "agent-x", tt.podErr },
				Exec: func(_ context.Context, pod string, cmd []string, stdout, stderr io.Writer) error {
					gotPod, gotCmd = pod, cmd
					return tt.execErr
				}}
			code, err := p.RunAgent(context.Background(), "n1", []string{"read-key", "synced/a.pem"}, io.Discard, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			want := []string{AgentBinary, "--keys-root", "/host/keys-parent/keys", "--cri", "unix:///host/cri/crio.sock", "read-key", "synced/a.pem"}
			if err != nil || code != tt.wantCode || gotPod != "agent-x" || !slices.Equal(gotCmd, want) {
				t.Fatalf("RunAgent = %d, %v in %q running %q; want %d in agent-x running %q", code, err, gotPod, gotCmd, tt.wantCode, want)
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
	dynamic, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AgentImage(dynamic); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("a dynamic binary: err = %v", err)
	}
	img, err := AgentImage(static)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := TagOf(img)
	if err != nil || len(tag) != 12 {
		t.Fatalf("TagOf = %q, %v", tag, err)
	}
	again, _ := AgentImage(static)
	if tag2, _ := TagOf(again); tag2 != tag {
		t.Errorf("tag not reproducible: %s then %s", tag, tag2)
	}
	if !slices.Equal(img.Entrypoint, []string{AgentBinary, "wait"}) {
		t.Errorf("entrypoint %q", img.Entrypoint)
	}
}

// The agent DaemonSet carries the run's labels and mounts CRI-O's configuration when asked.
func TestDaemonSetRunLabels(t *testing.T) {
	runLabels := map[string]string{"keysync.dev/run-id": "r2"}
	ds := DaemonSet(Options{Namespace: DefaultNamespace, Image: "i", Labels: runLabels, CRIOConfigDir: "/etc/crio"})
	if ds.Labels["keysync.dev/run-id"] != "r2" || ds.Spec.Template.Labels["keysync.dev/run-id"] != "r2" {
		t.Errorf("DaemonSet labels %v, template %v: want the run ID", ds.Labels, ds.Spec.Template.Labels)
	}
	var mounted bool
	for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == CRIOConfigMount {
			mounted = m.ReadOnly
		}
	}
	if !mounted {
		t.Error("CRIOConfigDir is not mounted read-only at CRIOConfigMount")
	}
}
