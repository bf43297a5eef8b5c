// Package cluster is the node driver for any Kubernetes cluster whose nodes run CRI-O: a real
// cluster reached with a kubeconfig, or a lab. Deploy starts a DaemonSet, keysync-node-agent,
// with one pod per node; each pod mounts its node's keys tree (read-only) and CRI socket and
// runs the agent image (cmd/keysync-node-agent FROM scratch). The driver speaks the node agent
// protocol over pod exec (the API server's exec subresource, WebSocket or SPDY: see
// PodExec); images run as real Pods pinned to the node (package podrun). Close removes the
// DaemonSet again.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/podrun"
)

// Names and defaults.
const (
	DefaultNamespace = "keysync-suites"
	AgentName        = "keysync-node-agent"
	// DefaultKeysRoot and DefaultCRISocket are CRI-O's defaults on a node.
	DefaultKeysRoot  = "/etc/crio/keys"
	DefaultCRISocket = "/var/run/crio/crio.sock"
	// AgentBinary is the agent binary's path in the agent image.
	AgentBinary = "/keysync-node-agent"
	// Where the agent pod sees the directories holding the node's keys tree and CRI socket.
	agentKeysParent = "/host/keys-parent"
	agentCRIDir     = "/host/cri"
	labelName       = "app.kubernetes.io/name"
	labelManaged    = names.LabelManagedBy
	managedBy       = names.ManagedBy
	// templateGenerationLabel is the DaemonSet controller's label of a pod's template generation.
	templateGenerationLabel = "pod-template-generation"
	// labelPSA lets the agent's hostPath volumes past Pod Security admission in its namespace.
	labelPSA = "pod-security.kubernetes.io/enforce"
)

// AgentCommand is the agent's command line in its pod for args (OP [ARG...]): the agent
// binary with the node's keys tree and CRI socket as the pod mounts them.
func AgentCommand(keysRoot, criSocket string, args ...string) []string {
	return append([]string{AgentBinary,
		"--keys-root", path.Join(agentKeysParent, path.Base(keysRoot)),
		"--cri", "unix://" + path.Join(agentCRIDir, path.Base(strings.TrimPrefix(criSocket, "unix://")))}, args...)
}

// Options configure Deploy.
type Options struct {
	// Client and Config reach the cluster (Config for exec).
	Client kubernetes.Interface
	Config *rest.Config
	// Image is the agent image, pullable by every node. Required.
	Image string
	// Namespace holds the DaemonSet (default keysync-suites, which suites/deploy/runner-rbac.yaml
	// ships; created if missing and this identity may, and then removed by Close). One run at
	// a time uses it (its Lease: see claim).
	Namespace string
	// KeysRoot and CRISocket are the host paths on the nodes (CRI-O's defaults when empty; a
	// unix:// prefix is dropped).
	KeysRoot  string
	CRISocket string
	// SELinuxType is the SELinux type the agent runs as (only on nodes that enforce SELinux,
	// e.g. "spc_t"); empty: none set, the runtime's default.
	SELinuxType string
	// Placement puts the agent where the synchronizer under test runs (its DaemonSet's
	// tolerations, node selector and affinity: see PlacementOf); nil tolerates every taint.
	Placement *corev1.PodSpec
	// PullSecret is a .dockerconfigjson (a containers-auth.json document is one) with the
	// registry's credentials for Image: Deploy puts it in a Secret the agent pods name in
	// imagePullSecrets, Close removes it. Nil: the image needs none.
	PullSecret []byte
	// RunNamespace holds RunImage's Pods (default "default").
	RunNamespace string
	// ReadyTimeout bounds the wait for one ready agent pod per node (default 3 minutes).
	ReadyTimeout time.Duration
	// RunTimeout bounds one RunImage (default 3 minutes); CmdTimeout one agent command (default
	// 5 minutes: a pull of a large image).
	RunTimeout time.Duration
	CmdTimeout time.Duration
	Logger     *slog.Logger
	// Labels are added to everything Deploy and RunImage create (the namespace, the
	// DaemonSet, its pods, RunImage's Pods): the run's keysync.dev/run-id, so that
	// `keysync conformance cleanup --run-id` finds what a killed run left.
	Labels map[string]string
	// CRIOConfigDir, when set, is the node's CRI-O configuration directory (/etc/crio),
	// mounted read-only at CRIOConfigMount for the crio-keys-path operation (keysync doctor).
	CRIOConfigDir string
	// LeaseDuration and LeaseRenew time the namespace's Lease (DefaultLeaseDuration,
	// DefaultLeaseRenew when zero).
	LeaseDuration time.Duration
	LeaseRenew    time.Duration
}

// CRIOConfigMount is where the agent pod sees Options.CRIOConfigDir.
const CRIOConfigMount = "/host/crio-config"

// Driver is the cluster's nodedriver.Driver: the protocol's client over pod exec.
type Driver struct {
	*nodedriver.Agent
	opts      Options
	createdNS bool
	// holder is this run's identity in the namespace's Lease, leased says it took the Lease
	// (leaseUID), stopRenew stops the renewals.
	holder    string
	leased    bool
	leaseUID  types.UID
	stopRenew func()
}

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
	_ nodedriver.Auditor    = (*Driver)(nil)
)

// defaults fills in the defaults, then says what is missing.
func (o *Options) defaults() error {
	set := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	set(&o.Namespace, DefaultNamespace)
	set(&o.KeysRoot, DefaultKeysRoot)
	set(&o.CRISocket, DefaultCRISocket)
	o.CRISocket = strings.TrimPrefix(o.CRISocket, "unix://")
	if !path.IsAbs(o.KeysRoot) || !path.IsAbs(o.CRISocket) || path.Dir(o.KeysRoot) == o.KeysRoot {
		return fmt.Errorf("cluster driver: keys root %q and CRI socket %q must be absolute paths on the nodes", o.KeysRoot, o.CRISocket)
	}
	set(&o.RunNamespace, corev1.NamespaceDefault)
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&o.ReadyTimeout, 3 * time.Minute}, {&o.RunTimeout, 3 * time.Minute}, {&o.CmdTimeout, 5 * time.Minute},
		{&o.LeaseDuration, DefaultLeaseDuration}, {&o.LeaseRenew, DefaultLeaseRenew}} {
		if *d.p <= 0 {
			*d.p = d.def
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil || o.Config == nil {
		return errors.New("cluster driver: a Kubernetes client and its rest config are required")
	}
	if o.Image == "" {
		return errors.New("cluster driver: no agent image (NODE_AGENT_IMAGE; `keysync lab up --kind cluster` pushes one)")
	}
	return nil
}

// PlacementOf is the scheduling part of a synchronizer's pod spec (tolerations, node selector,
// affinity), for Options.Placement.
func PlacementOf(spec corev1.PodSpec) *corev1.PodSpec {
	return &corev1.PodSpec{Tolerations: spec.Tolerations, NodeSelector: spec.NodeSelector, Affinity: spec.Affinity}
}

// AgentCapabilities are the only capabilities the agent keeps (every other one is dropped).
// It runs as root and reads key files a synchronizer may own under its own uid (the reference
// synchronizer's are 65532's, 0600, in 0700 directories): CAP_DAC_READ_SEARCH lets it read
// those files and search those directories, and nothing else (CAP_DAC_OVERRIDE would also let
// it write). Connecting to CRI-O's socket (root's, 0660) needs no capability for root.
var AgentCapabilities = []corev1.Capability{"DAC_READ_SEARCH"}

// PSALevel is the Pod Security level of the namespace Deploy creates: "privileged" is the
// floor for the agent, because the Pod Security Standards disallow every hostPath volume from
// "baseline" up, and the agent needs two (the keys tree and the CRI socket). The pod itself
// asks for nothing else "restricted" forbids but running as root with one added capability.
const PSALevel = "privileged"

// DaemonSet is the agent DaemonSet Deploy applies, with least privilege: root with every
// capability dropped but AgentCapabilities, no privilege escalation, not privileged, the
// runtime's default seccomp profile, a read-only root filesystem, no service account token;
// the directory holding the keys tree read-only (so that a tree created later or a mount over
// it are seen; nothing is created on a node) and CRI-O's socket FILE (hostPath type Socket:
// not its directory; a CRI-O restarted during a run makes a new socket the agent no longer
// sees, and its pods are then recreated by the next run), placed where the synchronizer runs.
// No SELinux type unless Options.SELinuxType names one (nodes that enforce SELinux: a
// container_t process may not connect to CRI-O's socket).
func DaemonSet(o Options) *appsv1.DaemonSet {
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels[labelName], labels[labelManaged] = AgentName, managedBy
	hostPath := func(name, p string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: &t}}}
	}
	root := int64(0)
	no, yes := false, true
	hostToContainer := corev1.MountPropagationHostToContainer
	sc := &corev1.SecurityContext{RunAsUser: &root, RunAsGroup: &root, RunAsNonRoot: &no, Privileged: &no,
		AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: AgentCapabilities},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	if o.SELinuxType != "" {
		sc.SELinuxOptions = &corev1.SELinuxOptions{Type: o.SELinuxType}
	}
	var pullSecrets []corev1.LocalObjectReference
	if o.PullSecret != nil {
		pullSecrets = []corev1.LocalObjectReference{{Name: PullSecretName}}
	}
	spec := corev1.PodSpec{
		ImagePullSecrets:              pullSecrets,
		Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		TerminationGracePeriodSeconds: new(int64),
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name:            "agent",
			Image:           o.Image,
			Command:         AgentCommand(o.KeysRoot, o.CRISocket, nodedriver.OpWait),
			SecurityContext: sc,
			VolumeMounts: []corev1.VolumeMount{
				{Name: "keys-parent", MountPath: agentKeysParent, ReadOnly: true, MountPropagation: &hostToContainer},
				// A socket needs write access to connect; the mount is the socket alone.
				{Name: "cri-socket", MountPath: path.Join(agentCRIDir, path.Base(o.CRISocket))},
			},
		}},
		Volumes: []corev1.Volume{
			hostPath("keys-parent", path.Dir(o.KeysRoot), corev1.HostPathDirectory),
			hostPath("cri-socket", o.CRISocket, corev1.HostPathSocket),
		},
	}
	if o.CRIOConfigDir != "" {
		c := &spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "crio-config", MountPath: CRIOConfigMount, ReadOnly: true})
		spec.Volumes = append(spec.Volumes, hostPath("crio-config", o.CRIOConfigDir, corev1.HostPathDirectory))
	}
	if p := o.Placement; p != nil {
		spec.Tolerations, spec.NodeSelector, spec.Affinity = p.Tolerations, p.NodeSelector, p.Affinity
	}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: AgentName, Namespace: o.Namespace, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelName: AgentName}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

// ClaimError is Deploy's error when it could not claim the agent's namespace (ErrBusy among
// others): Deploy created nothing then, or removed the namespace it had just created, and
// there is nothing of this run's to wait for.
type ClaimError struct{ Err error }

func (e *ClaimError) Error() string { return e.Err.Error() }
func (e *ClaimError) Unwrap() error { return e.Err }

// Deploy claims the agent's namespace (claim: ErrBusy while another run uses it), applies the
// agent DaemonSet (replacing one a killed run left) and waits until every Ready node it is
// scheduled to has a ready agent pod of this template. NotReady nodes are left out (and
// logged). On failure nothing is left behind.
func Deploy(ctx context.Context, opts Options) (_ *Driver, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	d := &Driver{opts: opts, holder: holderIdentity(opts.Labels)}
	d.Agent = &nodedriver.Agent{Transport: &PodExec{Pod: d.agentPod, Exec: d.streamExec, ExecStdin: d.streamExecStdin,
		KeysRoot: opts.KeysRoot, CRISocket: opts.CRISocket, Timeout: opts.CmdTimeout, Logger: opts.Logger}}
	if err := d.claim(ctx); err != nil {
		return nil, &ClaimError{Err: err}
	}
	defer func() {
		if err != nil {
			if cerr := d.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	if err := d.ensurePullSecret(ctx); err != nil {
		return nil, err
	}
	dss := opts.Client.AppsV1().DaemonSets(opts.Namespace)
	want := DaemonSet(opts)
	if cur, err := dss.Get(ctx, AgentName, metav1.GetOptions{}); err == nil {
		cur.Spec, cur.Labels = want.Spec, want.Labels // an earlier run's: now this run's
		if _, err := dss.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("failed to update DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("failed to get DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
	} else if _, err := dss.Create(ctx, want, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("failed to create DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, time.Second, opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		st, err := d.state(ctx)
		if err != nil {
			return false, err
		}
		last = st.String()
		return st.rolledOut && len(st.waiting) == 0 && len(st.ready) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("agent pods (image %s) not ready on every Ready node within %s (%s%s): %w",
			opts.Image, opts.ReadyTimeout, last, d.failedCreates(ctx), err)
	}
	if st, err := d.state(ctx); err == nil && len(st.notReady) > 0 {
		opts.Logger.InfoContext(ctx, "nodes left out: not Ready", "nodes", st.notReady)
	}
	return d, nil
}

// rollout is where the agent DaemonSet stands.
type rollout struct {
	rolledOut bool     // every scheduled pod runs the current template
	ready     []string // Ready nodes with a ready current agent pod
	waiting   []string // Ready nodes whose current agent pod is not ready yet
	notReady  []string // nodes that are not Ready (left out)
}

func (r rollout) String() string {
	return fmt.Sprintf("rolled out %v, ready on %v, waiting on %v, not Ready %v", r.rolledOut, r.ready, r.waiting, r.notReady)
}

// state reads the DaemonSet, its current pods and the nodes.
func (d *Driver) state(ctx context.Context) (rollout, error) {
	var r rollout
	ds, err := d.opts.Client.AppsV1().DaemonSets(d.opts.Namespace).Get(ctx, AgentName, metav1.GetOptions{})
	if err != nil {
		return r, fmt.Errorf("failed to get DaemonSet %s/%s: %w", d.opts.Namespace, AgentName, err)
	}
	s := ds.Status
	r.rolledOut = s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled
	nodes, err := d.opts.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, fmt.Errorf("failed to list nodes: %w", err)
	}
	readyNode := map[string]bool{}
	for _, n := range nodes.Items {
		if nodeReady(n) {
			readyNode[n.Name] = true
		} else {
			r.notReady = append(r.notReady, n.Name)
		}
	}
	pods, err := d.currentPods(ctx, ds, "")
	if err != nil {
		return r, err
	}
	for _, p := range pods {
		switch n := p.Spec.NodeName; {
		case !readyNode[n]:
		case podReady(p):
			r.ready = append(r.ready, n)
		default:
			r.waiting = append(r.waiting, n)
		}
	}
	slices.Sort(r.ready)
	r.ready = slices.Compact(r.ready)
	slices.Sort(r.notReady)
	return r, nil
}

// failedCreates quotes the DaemonSet's FailedCreate Events (Pod Security, quota, ...).
func (d *Driver) failedCreates(ctx context.Context) string {
	evs, err := d.opts.Client.CoreV1().Events(d.opts.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=DaemonSet,involvedObject.name=" + AgentName + ",reason=FailedCreate"})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	return "; FailedCreate: " + evs.Items[len(evs.Items)-1].Message
}

// Close removes what Deploy made (the namespace when Deploy created or adopted it, else the
// DaemonSet and the pull Secret) and releases the namespace's Lease. A run that lost its Lease
// to another run leaves everything to that run.
func (d *Driver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held, err := d.stillHeld(ctx)
	if err != nil {
		return err
	}
	if held == nil {
		return nil // never claimed, or taken over: nothing here is this run's
	}
	cs := d.opts.Client
	if d.createdNS {
		if err := cs.CoreV1().Namespaces().Delete(ctx, d.opts.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete namespace %s: %w", d.opts.Namespace, err)
		}
		return nil // the Lease goes with it
	}
	var errs []error
	err = cs.AppsV1().DaemonSets(d.opts.Namespace).Delete(ctx, AgentName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("failed to delete DaemonSet %s/%s: %w", d.opts.Namespace, AgentName, err))
	}
	if d.opts.PullSecret != nil {
		err := cs.CoreV1().Secrets(d.opts.Namespace).Delete(ctx, PullSecretName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("failed to delete Secret %s/%s: %w", d.opts.Namespace, PullSecretName, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // the Lease stays until it expires: the next run takes over
	}
	return d.releaseLease(ctx, held)
}

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "cluster" }

// Nodes implements nodedriver.Driver: the Ready nodes with a ready agent pod, sorted (where
// the synchronizer under test runs, when Options.Placement is its placement).
func (d *Driver) Nodes(ctx context.Context) ([]string, error) {
	st, err := d.state(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.ready) == 0 {
		return nil, fmt.Errorf("no Ready node has a ready %s pod (%s)", AgentName, st)
	}
	return st.ready, nil
}

// currentPods are the DaemonSet's pods of its current template (an earlier run's may still be
// going away), on node when it is not empty.
func (d *Driver) currentPods(ctx context.Context, ds *appsv1.DaemonSet, node string) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{LabelSelector: labelName + "=" + AgentName}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	list, err := d.opts.Client.CoreV1().Pods(d.opts.Namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to list %s pods: %w", AgentName, err)
	}
	gen := strconv.FormatInt(ds.Generation, 10)
	var pods []corev1.Pod
	for _, p := range list.Items {
		if metav1.IsControlledBy(&p, ds) && p.Labels[templateGenerationLabel] == gen && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// RunImage implements nodedriver.Driver with a Pod pinned to node.
func (d *Driver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner.
func (d *Driver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.RunWith(ctx, d.opts.Client, d.opts.RunNamespace, node, ref, args, podrun.Options{Labels: d.opts.Labels})
}

// RunImageArgsAuth is RunImageArgs with registry credentials: the Pod gets a pull Secret made
// of authFile (a containers-auth.json document is a valid .dockerconfigjson).
func (d *Driver) RunImageArgsAuth(ctx context.Context, node, ref string, args []string, authFile []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.RunWith(ctx, d.opts.Client, d.opts.RunNamespace, node, ref, args, podrun.Options{Labels: d.opts.Labels, DockerConfigJSON: authFile})
}
