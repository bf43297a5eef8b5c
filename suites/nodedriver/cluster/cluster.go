// Package cluster is the node driver for any Kubernetes cluster whose nodes run CRI-O: a real
// cluster reached with a kubeconfig, or a lab. Deploy starts a DaemonSet, keysync-node-agent,
// with one pod per node; each pod mounts its node's keys tree (read-only) and CRI socket and
// runs `keysync node-agent` (package internal/cli/nodeagent) from the agent image (the keysync
// binary FROM scratch). Pulls and key reads are `node-agent` commands exec'd in the node's
// pod through the API server; images run as real Pods pinned to the node (package podrun).
// Close removes the DaemonSet again.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

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
	// AgentBinary is the keysync binary's path in the agent image.
	AgentBinary = "/keysync"
	// Where the agent pod sees the node's paths (node-agent's defaults).
	agentKeysRoot = "/host/keys"
	agentCRISock  = "/host/cri.sock"
	labelName     = "app.kubernetes.io/name"
	labelManaged  = "app.kubernetes.io/managed-by"
	managedBy     = "keysync-suites"
)

// AgentArgs is the agent image's command line for op (node-agent's flags point at the mounts).
func AgentArgs(op string, args ...string) []string {
	return append([]string{AgentBinary, "node-agent", "--keys-root", agentKeysRoot, "--cri", "unix://" + agentCRISock, op}, args...)
}

// Options configure Deploy.
type Options struct {
	// Client and Config reach the cluster (Config for exec).
	Client kubernetes.Interface
	Config *rest.Config
	// Image is the agent image, pullable by every node. Required.
	Image string
	// Namespace holds the DaemonSet (default keysync-suites; created if missing, and then
	// removed by Close).
	Namespace string
	// KeysRoot and CRISocket are the host paths on the nodes (CRI-O's defaults when empty).
	KeysRoot  string
	CRISocket string
	// RunNamespace holds RunImage's Pods (default "default").
	RunNamespace string
	// ReadyTimeout bounds the wait for one ready agent pod per node (default 3 minutes).
	ReadyTimeout time.Duration
	// RunTimeout bounds one RunImage (default 3 minutes); CmdTimeout one agent command (default
	// 5 minutes: a pull of a large image).
	RunTimeout time.Duration
	CmdTimeout time.Duration
	Logger     *slog.Logger
}

// Driver is the cluster's nodedriver.Driver.
type Driver struct {
	opts      Options
	createdNS bool
}

var (
	_ nodedriver.Driver     = (*Driver)(nil)
	_ nodedriver.ArgsRunner = (*Driver)(nil)
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
	set(&o.RunNamespace, corev1.NamespaceDefault)
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&o.ReadyTimeout, 3 * time.Minute}, {&o.RunTimeout, 3 * time.Minute}, {&o.CmdTimeout, 5 * time.Minute}} {
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
		return errors.New("cluster driver: no agent image (NODE_AGENT_IMAGE; `keysync conformance init` pushes one)")
	}
	return nil
}

// DaemonSet is the agent DaemonSet Deploy applies: root, not privileged, the keys tree
// mounted read-only, the CRI socket, every taint tolerated.
func DaemonSet(o Options) *appsv1.DaemonSet {
	labels := map[string]string{labelName: AgentName, labelManaged: managedBy}
	hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
	}
	root := int64(0)
	no := false
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: AgentName, Namespace: o.Namespace, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelName: AgentName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: new(int64),
					AutomountServiceAccountToken:  &no,
					Containers: []corev1.Container{{
						Name:    "agent",
						Image:   o.Image,
						Command: AgentArgs("wait"),
						SecurityContext: &corev1.SecurityContext{RunAsUser: &root, Privileged: &no,
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: new(bool(true))},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "keys", MountPath: agentKeysRoot, ReadOnly: true},
							{Name: "cri", MountPath: agentCRISock},
						},
					}},
					Volumes: []corev1.Volume{
						// The tree may not exist yet on a node: mount whatever is there (no
						// type check), never create it.
						hostPath("keys", o.KeysRoot, corev1.HostPathUnset),
						hostPath("cri", o.CRISocket, corev1.HostPathSocket),
					},
				},
			},
		},
	}
}

// Deploy applies the agent DaemonSet (replacing one left by an earlier run) and waits until
// every node that should run it has a ready agent pod.
func Deploy(ctx context.Context, opts Options) (*Driver, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	d := &Driver{opts: opts}
	cs := opts.Client
	if _, err := cs.CoreV1().Namespaces().Get(ctx, opts.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace, Labels: map[string]string{labelManaged: managedBy}}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("failed to create namespace %s: %w", opts.Namespace, err)
		}
		d.createdNS = true
	} else if err != nil {
		return nil, fmt.Errorf("failed to get namespace %s: %w", opts.Namespace, err)
	}
	dss := cs.AppsV1().DaemonSets(opts.Namespace)
	want := DaemonSet(opts)
	if cur, err := dss.Get(ctx, AgentName, metav1.GetOptions{}); err == nil {
		cur.Spec = want.Spec
		if _, err := dss.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("failed to update DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("failed to get DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
	} else if _, err := dss.Create(ctx, want, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("failed to create DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
	}
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		ds, err := dss.Get(ctx, AgentName, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("failed to get DaemonSet %s/%s: %w", opts.Namespace, AgentName, err)
		}
		s := ds.Status
		last = fmt.Sprintf("desired %d, updated %d, ready %d", s.DesiredNumberScheduled, s.UpdatedNumberScheduled, s.NumberReady)
		return s.ObservedGeneration >= ds.Generation && s.DesiredNumberScheduled > 0 &&
			s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled, nil
	})
	if err != nil {
		return nil, fmt.Errorf("agent pods (image %s) not ready on every node within %s (%s): %w", opts.Image, opts.ReadyTimeout, last, err)
	}
	return d, nil
}

// Close removes the DaemonSet (and the namespace, when Deploy created it).
func (d *Driver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := d.opts.Client
	if d.createdNS {
		if err := cs.CoreV1().Namespaces().Delete(ctx, d.opts.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete namespace %s: %w", d.opts.Namespace, err)
		}
		return nil
	}
	err := cs.AppsV1().DaemonSets(d.opts.Namespace).Delete(ctx, AgentName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to delete DaemonSet %s/%s: %w", d.opts.Namespace, AgentName, err)
	}
	return nil
}

// Name implements nodedriver.Driver.
func (d *Driver) Name() string { return "cluster" }

// Nodes implements nodedriver.Driver: the nodes with a ready agent pod, sorted.
func (d *Driver) Nodes(ctx context.Context) ([]string, error) {
	pods, err := d.agentPods(ctx, "")
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, p := range pods {
		if ready(p) && !slices.Contains(nodes, p.Spec.NodeName) {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	slices.Sort(nodes)
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no ready %s pod in namespace %s", AgentName, d.opts.Namespace)
	}
	return nodes, nil
}

func (d *Driver) agentPods(ctx context.Context, node string) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{LabelSelector: labelName + "=" + AgentName}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	list, err := d.opts.Client.CoreV1().Pods(d.opts.Namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to list %s pods: %w", AgentName, err)
	}
	return list.Items, nil
}

func ready(p corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	return len(p.Status.ContainerStatuses) > 0
}

// agentPod waits (up to ReadyTimeout: a node that just joined) for node's ready agent pod.
func (d *Driver) agentPod(ctx context.Context, node string) (string, error) {
	var name string
	err := wait.PollUntilContextTimeout(ctx, time.Second, d.opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := d.agentPods(ctx, node)
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if ready(p) {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no ready %s pod on node %s: %w", AgentName, node, err)
	}
	return name, nil
}

// exec runs the agent command op on node and returns its stdout; exit statuses follow the
// command-hook contract (3 unsupported, 4 not found).
func (d *Driver) exec(ctx context.Context, node, op string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.CmdTimeout)
	defer cancel()
	pod, err := d.agentPod(ctx, node)
	if err != nil {
		return nil, err
	}
	req := d.opts.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(d.opts.Namespace).
		Name(pod).SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: "agent", Command: AgentArgs(op, args...), Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(d.opts.Config, "POST", req.URL())
	if err != nil {
		return nil, fmt.Errorf("failed to exec in %s on node %s: %w", pod, node, err)
	}
	var out, errb bytes.Buffer
	d.opts.Logger.DebugContext(ctx, "node-agent", "node", node, "op", op)
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	if err == nil {
		return out.Bytes(), nil
	}
	msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(errb.String()), "ERROR: "))
	var ee utilexec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitStatus() {
		case nodedriver.ExitUnsupported:
			return nil, fmt.Errorf("node %s: %s: %w", node, msg, nodedriver.ErrUnsupported)
		case nodedriver.ExitNotFound:
			return nil, fmt.Errorf("node %s: %s: %w", node, msg, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("node %s: %s", node, msg)
	}
	return nil, fmt.Errorf("failed to exec node-agent %s in %s on node %s: %w (%s)", op, pod, node, err, msg)
}

// PullImage implements nodedriver.Driver: CRI PullImage on the node; the error quotes CRI-O.
func (d *Driver) PullImage(ctx context.Context, node, ref string) error {
	_, err := d.exec(ctx, node, "pull-image", ref)
	return err
}

// RunImage implements nodedriver.Driver with a Pod pinned to node.
func (d *Driver) RunImage(ctx context.Context, node, ref string) (string, error) {
	return d.RunImageArgs(ctx, node, ref, nil)
}

// RunImageArgs implements nodedriver.ArgsRunner.
func (d *Driver) RunImageArgs(ctx context.Context, node, ref string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RunTimeout)
	defer cancel()
	return podrun.Run(ctx, d.opts.Client, d.opts.RunNamespace, node, ref, args)
}

// ListKeys implements nodedriver.Driver.
func (d *Driver) ListKeys(ctx context.Context, node string) ([]nodedriver.Entry, error) {
	out, err := d.exec(ctx, node, "list-keys")
	if err != nil {
		return nil, err
	}
	return nodedriver.ParseListing(out)
}

// ReadKey implements nodedriver.Driver.
func (d *Driver) ReadKey(ctx context.Context, node, relpath string) ([]byte, error) {
	rel, err := nodedriver.CleanRelPath(relpath)
	if err != nil {
		return nil, err
	}
	return d.exec(ctx, node, "read-key", rel)
}
