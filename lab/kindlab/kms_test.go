package kindlab

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/lab"
)

// kubeadmAPIServer is the shape of kubeadm's kube-apiserver static pod.
const kubeadmAPIServer = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --etcd-servers=https://127.0.0.1:2379
    image: registry.k8s.io/kube-apiserver:v1.34.4
    name: kube-apiserver
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
`

func TestPatchAPIServer(t *testing.T) {
	out, changed, err := patchAPIServer([]byte(kubeadmAPIServer))
	if err != nil || !changed {
		t.Fatalf("patchAPIServer = changed %v, %v", changed, err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if !slices.Contains(c.Command, "--encryption-provider-config="+encryptionConfig()) || !slices.Contains(c.Command, "--etcd-servers=https://127.0.0.1:2379") {
		t.Errorf("command = %v", c.Command)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v.HostPath.Path
	}
	for _, dir := range []string{kmsNodeDir, kmsSocketDir, "/etc/kubernetes/pki"} {
		if name, ok := mounts[dir]; !ok || vols[name] != dir {
			t.Errorf("%s: mounted as %q from %q", dir, name, vols[name])
		}
	}
	again, changed, err := patchAPIServer(out)
	if err != nil || changed || string(again) != string(out) {
		t.Errorf("second patch: changed %v, %v", changed, err)
	}
	other := strings.Replace(kubeadmAPIServer, "    - --etcd-servers", "    - --encryption-provider-config=/elsewhere.yaml\n    - --etcd-servers", 1)
	if _, _, err := patchAPIServer([]byte(other)); err == nil || !strings.Contains(err.Error(), "another --encryption-provider-config") {
		t.Errorf("foreign encryption config: %v", err)
	}
	for _, bad := range []string{"{", "spec:\n  containers:\n  - name: etcd\n"} {
		if _, _, err := patchAPIServer([]byte(bad)); err == nil {
			t.Errorf("patchAPIServer(%q) accepted it", bad)
		}
	}
}

func TestKMSFiles(t *testing.T) {
	env := lab.Env{MockKPClusterURL: "http://172.18.0.9:8080", MockKPClusterTokenURL: "http://172.18.0.9:8080/identity/token",
		KPAPIKey: "lab-apikey-x", KPInstanceID: "lab-i", KMSRootKeyID: "lab-kms-root-1"}
	cfg := kmsPluginConfigYAML(env)
	for _, want := range []string{`CRK_ID: "lab-kms-root-1"`, `URL: "http://172.18.0.9:8080"`, `TOKEN_URL: "http://172.18.0.9:8080/identity/token"`,
		`UNIX_SOCKET_PATH: "` + kmsSocket() + `"`, "HEALTHZ_PORT: 8087"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("kmsplugin-config.yaml lacks %s:\n%s", want, cfg)
		}
	}
	if enc := encryptionConfigYAML(); !strings.Contains(enc, "name: "+KMSProviderName) || !strings.Contains(enc, "endpoint: unix://"+kmsSocket()) ||
		strings.Index(enc, "kms:") > strings.Index(enc, "identity") {
		t.Errorf("encryption config:\n%s", enc)
	}
	pod := kmsPluginPod("127.0.0.1:5001/keysync/kms-plugin@sha256:00", "abc")
	c := pod.Spec.Containers[0]
	if !pod.Spec.HostNetwork || c.Image != "127.0.0.1:5001/keysync/kms-plugin@sha256:00" || !slices.Contains(c.Args, "--allow-insecure-kp") ||
		c.Env[0] != (corev1.EnvVar{Name: "config_file", Value: kmsPluginConfig()}) || c.ReadinessProbe.HTTPGet.Port.IntValue() != kmsHealthPort ||
		pod.Annotations["keysync.dev/config-sha256"] != "abc" {
		t.Errorf("static pod: %+v", pod.Spec)
	}
	cl, err := ClusterConfig("k", "img", 1)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int32{}
	for _, m := range cl.Nodes[0].ExtraPortMappings {
		got[m.ContainerPort] = m.HostPort
		if m.ListenAddress != "127.0.0.1" {
			t.Errorf("port %d published on %q, want loopback", m.ContainerPort, m.ListenAddress)
		}
	}
	if got[2379] != 5004 || got[kmsHealthPort] != 5005 || len(cl.Nodes[1].ExtraPortMappings) != 0 {
		t.Errorf("port mappings: control plane %+v, worker %+v", cl.Nodes[0].ExtraPortMappings, cl.Nodes[1].ExtraPortMappings)
	}
}
