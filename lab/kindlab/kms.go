package kindlab

// Secrets encrypted at rest, as the KMS runbook sets it up on a control plane: keysync's KMS v2
// plug-in (cmd/keysync-kms-plugin, an image FROM scratch pushed to the lab registry) runs as a
// static pod on the control-plane node, wrapping kube-apiserver's DEKs with its own root key
// in the lab's mockkp; kube-apiserver's manifest gains --encryption-provider-config (the
// plug-in first for secrets, then identity) and the two host paths; every Secret is then
// rewritten. The cluster must exist and mockkp run before (kubeadm's own Secrets are written
// during init, when the plug-in could not yet reach Key Protect), so this is a step after
// mockkp's rather than a kubeadm patch. etcd's client port and the plug-in's health port are
// published on loopback (ClusterConfig's port mappings), and etcd's CA and a client
// certificate are copied out for the suites (capabilities kms and etcd).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// Published on the host's loopback by the control-plane node (ClusterConfig).
const (
	EtcdHostAddr      = "127.0.0.1:5004"
	KMSHealthHostAddr = "127.0.0.1:5005"
)

// On the control-plane node.
const (
	// kmsHealthPort is the plug-in's HEALTHZ_PORT on the node's network.
	kmsHealthPort = 8087
	// kmsNodeDir holds kmsplugin-config.yaml and the EncryptionConfiguration.
	kmsNodeDir = "/etc/kubernetes/keysync-kms"
	// kmsSocketDir holds the plug-in's gRPC socket, shared with kube-apiserver.
	kmsSocketDir = "/run/keysync-kms"
	// kmsStaticPod is the plug-in's static pod manifest.
	kmsStaticPod = "/etc/kubernetes/manifests/keysync-kms-plugin.yaml"
	// apiserverManifest is kubeadm's kube-apiserver static pod.
	apiserverManifest = "/etc/kubernetes/manifests/kube-apiserver.yaml"
	etcdPKIDir        = "/etc/kubernetes/pki/etcd"
)

// KMSProviderName names the plug-in in the EncryptionConfiguration and so in every encrypted
// value's prefix (k8s:enc:kms:v2:keysync-kp:); it must not change once data exists.
const KMSProviderName = labconfig.KMSProviderName

// kmsPluginRepo is the plug-in's repository in the lab registry.
const kmsPluginRepo = "keysync/kms-plugin"

func kmsSocket() string       { return kmsSocketDir + "/kms.sock" }
func kmsPluginConfig() string { return kmsNodeDir + "/kmsplugin-config.yaml" }
func encryptionConfig() string {
	return kmsNodeDir + "/encryption-config.yaml"
}

// kmsPluginConfigYAML is the runbook's kmsplugin-config.yaml for the lab's mockkp as the
// cluster reaches it.
func kmsPluginConfigYAML(env lab.Env) string {
	return labconfig.KMSPluginConfig(lab.KindKind, labconfig.KMSPlugin{Socket: kmsSocket(), HealthPort: kmsHealthPort,
		TokenURL: env.MockKPClusterTokenURL, URL: env.MockKPClusterURL, APIKey: env.KPAPIKey,
		InstanceID: env.KPInstanceID, RootKeyID: env.KMSRootKeyID})
}

// encryptionConfigYAML is kube-apiserver's --encryption-provider-config.
func encryptionConfigYAML() string { return labconfig.EncryptionConfig(kmsSocket()) }

func hostPathVolume(name, path string, t corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
}

// kmsPluginPod is the plug-in's static pod: host network (kube-apiserver's socket and the
// published health port), its config read-only, the socket directory shared. configSum (the
// config file's SHA-256) is an annotation, so that a changed config restarts the pod.
func kmsPluginPod(image, configSum string) *corev1.Pod {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Path: path,
			Port: intstr.FromInt32(kmsHealthPort)}}, PeriodSeconds: 10, FailureThreshold: 3}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "keysync-kms-plugin", Namespace: "kube-system", Labels: map[string]string{"component": "keysync-kms-plugin", "tier": "control-plane"},
			Annotations: map[string]string{"keysync.dev/config-sha256": configSum}},
		Spec: corev1.PodSpec{
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			Containers: []corev1.Container{{
				Name:            "keysync-kms-plugin",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				// The runbook's way to name the file: $config_file. The health port is probed
				// by the kubelet on loopback and published by the node container (0.0.0.0).
				Args:           []string{"--allow-insecure-kp", "--healthz-host", "0.0.0.0"},
				Env:            []corev1.EnvVar{{Name: "config_file", Value: kmsPluginConfig()}},
				LivenessProbe:  probe("/livez"),
				ReadinessProbe: probe("/readyz"),
				VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: kmsNodeDir, ReadOnly: true},
					{Name: "socket", MountPath: kmsSocketDir}},
			}},
			Volumes: []corev1.Volume{hostPathVolume("config", kmsNodeDir, corev1.HostPathDirectory),
				hostPathVolume("socket", kmsSocketDir, corev1.HostPathDirectoryOrCreate)},
		},
	}
}

// patchAPIServer adds the encryption config flag and the plug-in's two host paths to
// kube-apiserver's static pod; false when they are there already.
func patchAPIServer(manifest []byte) ([]byte, bool, error) {
	var pod corev1.Pod
	if err := yaml.Unmarshal(manifest, &pod); err != nil {
		return nil, false, fmt.Errorf("failed to parse %s: %w", apiserverManifest, err)
	}
	i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "kube-apiserver" })
	if i < 0 {
		return nil, false, fmt.Errorf("%s has no kube-apiserver container", apiserverManifest)
	}
	c := &pod.Spec.Containers[i]
	flag := "--encryption-provider-config=" + encryptionConfig()
	if slices.Contains(c.Command, flag) {
		return manifest, false, nil
	}
	if slices.ContainsFunc(c.Command, func(a string) bool { return strings.HasPrefix(a, "--encryption-provider-config=") }) {
		return nil, false, fmt.Errorf("%s already names another --encryption-provider-config", apiserverManifest)
	}
	c.Command = append(c.Command, flag)
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "keysync-kms-config", MountPath: kmsNodeDir, ReadOnly: true},
		corev1.VolumeMount{Name: "keysync-kms-socket", MountPath: kmsSocketDir})
	pod.Spec.Volumes = append(pod.Spec.Volumes, hostPathVolume("keysync-kms-config", kmsNodeDir, corev1.HostPathDirectory),
		hostPathVolume("keysync-kms-socket", kmsSocketDir, corev1.HostPathDirectoryOrCreate))
	out, err := yaml.Marshal(&pod)
	if err != nil {
		return nil, false, fmt.Errorf("failed to encode kube-apiserver's manifest: %w", err)
	}
	return out, true, nil
}

// writeNodeFile writes data to path on node (mode 0600), atomically: through a temp file
// outside the kubelet's manifest directory, then a rename.
func writeNodeFile(ctx context.Context, node, path string, data []byte) error {
	tmp := kmsNodeDir + "/." + filepath.Base(path) + ".tmp"
	script := "set -e; umask 077; mkdir -p " + kmsNodeDir + " " + filepath.Dir(path) + "; cat > " + tmp + "; mv " + tmp + " " + path
	if _, err := docker(ctx, strings.NewReader(string(data)), "exec", "-i", node, "sh", "-c", script); err != nil {
		return fmt.Errorf("failed to write %s on node %s: %w", path, node, err)
	}
	return nil
}

// KMSStep encrypts Secrets at rest through keysync's KMS plug-in (see the top of this file).
// It runs after MockKPStep (the plug-in's Key Protect) and before the addon.
func KMSStep(p Parts) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Encrypting Secrets at rest (KMS plug-in)", Run: func(ctx context.Context) (string, error) {
			return l.encryptAtRest(ctx, p)
		}}
	}
}

func (l *Lab) encryptAtRest(ctx context.Context, p Parts) (string, error) {
	if l.Env.MockKPClusterURL == "" || l.Env.KMSRootKeyID == "" {
		return "", fmt.Errorf("the KMS plug-in needs the lab's mockkp with a KMS root key (remove the %s container, e.g. make lab-down, so that it is seeded with one)", MockKPContainer)
	}
	node := l.controlPlane()
	bin := filepath.Join(l.Opts.OutDir, "bin", "keysync-kms-plugin")
	if err := buildStatic(ctx, p.Root, "cmd/keysync-kms-plugin", bin); err != nil {
		return "", err
	}
	img, err := hostImage(map[string]string{"/keysync-kms-plugin": bin}, nil, "/keysync-kms-plugin")
	if err != nil {
		return "", err
	}
	auth, err := registryauth.Load(l.RegistryAuthFile())
	if err != nil {
		return "", fmt.Errorf("failed to read the lab registry's credentials: %w", err)
	}
	// Pulled by the node's CRI-O under the rewritten name, with its global auth file.
	dgst, err := img.Push(ctx, auth.Client(nil), RegistryHostAddr, kmsPluginRepo, "lab")
	if err != nil {
		return "", fmt.Errorf("failed to push the KMS plug-in image: %w", err)
	}
	image := RegistryHostAddr + "/" + kmsPluginRepo + "@" + dgst.String()
	pluginCfg := []byte(kmsPluginConfigYAML(l.Env))
	sum := sha256.Sum256(pluginCfg)
	pod, err := yaml.Marshal(kmsPluginPod(image, hex.EncodeToString(sum[:])))
	if err != nil {
		return "", fmt.Errorf("failed to encode the KMS plug-in's pod: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{kmsPluginConfig(), pluginCfg}, {encryptionConfig(), []byte(encryptionConfigYAML())}, {kmsStaticPod, pod}} {
		if err := writeNodeFile(ctx, node, f.path, f.data); err != nil {
			return "", err
		}
	}
	l.Env.KMSHealthURL = "http://" + KMSHealthHostAddr + "/readyz"
	if err := lab.WaitHTTP(ctx, http.DefaultClient, l.Env.KMSHealthURL, 2*time.Minute); err != nil {
		return "", fmt.Errorf("the KMS plug-in's static pod is not ready on %s (crictl logs on node %s say why): %w", KMSHealthHostAddr, node, err)
	}

	cur, err := docker(ctx, nil, "exec", node, "cat", apiserverManifest)
	if err != nil {
		return "", fmt.Errorf("failed to read kube-apiserver's manifest on %s: %w", node, err)
	}
	patched, changed, err := patchAPIServer([]byte(cur))
	if err != nil {
		return "", err
	}
	if changed {
		if err := writeNodeFile(ctx, node, apiserverManifest, patched); err != nil {
			return "", err
		}
	}
	client, err := l.client()
	if err != nil {
		return "", err
	}
	if err := waitKMSProvider(ctx, client, 3*time.Minute); err != nil {
		return "", err
	}
	n, err := lab.RewriteSecrets(ctx, client)
	if err != nil {
		return "", err
	}
	if err := l.copyEtcdClientFiles(ctx, node); err != nil {
		return "", err
	}
	l.Env.EtcdEndpoints = []string{"https://" + EtcdHostAddr}
	for _, c := range []lab.Capability{lab.CapKMS, lab.CapEtcd} {
		if !l.Env.Has(c) {
			l.Env.Capabilities = append(l.Env.Capabilities, c)
		}
	}
	note := "reused"
	if changed {
		note = "kube-apiserver restarted"
	}
	return fmt.Sprintf("%s; %d Secrets rewritten; %s", note, n, image), nil
}

func (l *Lab) client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create a Kubernetes client: %w", err)
	}
	return c, nil
}

// waitKMSProvider waits until kube-apiserver runs with the KMS provider: its readyz has the
// KMS check (kms-providers, or kms-provider-0 without config reload) and it passes. The
// apiserver from before the manifest change has no such check.
func waitKMSProvider(ctx context.Context, client kubernetes.Interface, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, check := range []string{"/readyz/kms-providers", "/readyz/kms-provider-0"} {
			err := client.Discovery().RESTClient().Get().AbsPath(check).Do(ctx).Error()
			if err == nil {
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver did not come up with the KMS provider within %s: %v", timeout, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// copyEtcdClientFiles copies etcd's CA and kubeadm's etcd health-check client certificate out
// of the control-plane node into <out>/etcd (0600), for the suites' raw etcd reads.
func (l *Lab) copyEtcdClientFiles(ctx context.Context, node string) error {
	dir := filepath.Join(l.Opts.OutDir, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	for _, f := range []struct {
		src, dst string
		field    *string
	}{{"ca.crt", "ca.crt", &l.Env.EtcdCAFile}, {"healthcheck-client.crt", "client.crt", &l.Env.EtcdCertFile},
		{"healthcheck-client.key", "client.key", &l.Env.EtcdKeyFile}} {
		data, err := docker(ctx, nil, "exec", node, "cat", etcdPKIDir+"/"+f.src)
		if err != nil {
			return fmt.Errorf("failed to read %s/%s on %s: %w", etcdPKIDir, f.src, node, err)
		}
		dst := filepath.Join(dir, f.dst)
		if err := atomicfile.Write(dst, []byte(data+"\n"), 0o600); err != nil {
			return fmt.Errorf("failed to write %s: %w", dst, err)
		}
		*f.field = dst
	}
	return nil
}
