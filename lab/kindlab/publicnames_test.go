package kindlab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// kubectlBin finds kubectl as make test provides it: KEYSYNC_K8S_BIN, else the cached build
// (hack/build-k8s.sh kubectl builds it once).
func kubectlBin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KEYSYNC_K8S_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "kubectl")); err == nil {
			return filepath.Join(d, "kubectl")
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "hack", "build-k8s.sh"), "kubectl")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-k8s.sh kubectl: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return filepath.Join(lines[len(lines)-1], "kubectl")
}

// kustomize renders dir with kubectl kustomize and returns its DaemonSets and ConfigMaps.
func kustomize(t *testing.T, kubectl, dir string) ([]appsv1.DaemonSet, []corev1.ConfigMap) {
	t.Helper()
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	var dss []appsv1.DaemonSet
	var cms []corev1.ConfigMap
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
				t.Fatal(err)
			}
			dss = append(dss, ds)
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			cms = append(cms, cm)
		}
	}
	return dss, cms
}

// caSum is the test's stand-in CA sum ("" without mockkp).
func caSum(ip string) string {
	if ip == "" {
		return ""
	}
	return "f00d"
}

// checkPublicNames: the pod template maps every public name to ip (besides the aliases in
// keep) and carries the CA's sum (f00d), and the lab CA's ConfigMap holds ca.crt in the
// synchronizer's namespace.
func checkPublicNames(t *testing.T, ds appsv1.DaemonSet, cms []corev1.ConfigMap, ip, ca string, keep ...corev1.HostAlias) {
	t.Helper()
	if got := ds.Spec.Template.Annotations[LabCAAnnotation]; got != "f00d" {
		t.Errorf("DaemonSet %s: pod template annotation %s = %q, want the CA's sum", ds.Name, LabCAAnnotation, got)
	}
	want := append([]string{ip + " " + strings.Join(labconfig.KPPublicHosts(), " ")}, aliasStrings(keep)...)
	if got := aliasStrings(ds.Spec.Template.Spec.HostAliases); !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("DaemonSet %s: hostAliases %q, want %q", ds.Name, got, want)
	}
	found := false
	for _, cm := range cms {
		if cm.Name == LabCAConfigMap && cm.Namespace == names.Namespace && cm.Data["ca.crt"] == ca {
			found = true
		}
	}
	if !found {
		t.Errorf("no ConfigMap %s/%s with the lab CA: %+v", names.Namespace, LabCAConfigMap, cms)
	}
}

func aliasStrings(ha []corev1.HostAlias) []string {
	var out []string
	for _, a := range ha {
		out = append(out, a.IP+" "+strings.Join(a.Hostnames, " "))
	}
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestReferenceOverlay renders the kind lab's overlay of syncer/deploy: the lab image,
// --allow-insecure-kp, the public names and the lab CA trusted through SSL_CERT_FILE; without
// mockkp, neither names nor CA.
func TestReferenceOverlay(t *testing.T) {
	kubectl := kubectlBin(t)
	base, err := filepath.Abs("../../syncer/deploy")
	if err != nil {
		t.Fatal(err)
	}
	const ca = "-----BEGIN CERTIFICATE-----\nlab\n-----END CERTIFICATE-----\n"
	for _, ip := range []string{"172.18.0.9", ""} {
		t.Run("mockkp "+ip, func(t *testing.T) {
			overlay := t.TempDir()
			rel, err := filepath.Rel(overlay, base)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(overlay, "ca.crt"), []byte(ca), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(referenceOverlay(rel, "r:5000/keysync/syncer", "abc", ip, caSum(ip))), 0o644); err != nil {
				t.Fatal(err)
			}
			dss, cms := kustomize(t, kubectl, overlay)
			if len(dss) != 1 {
				t.Fatalf("%d DaemonSets, want 1", len(dss))
			}
			c := dss[0].Spec.Template.Spec.Containers[0]
			if c.Image != "r:5000/keysync/syncer:abc" || c.Args[len(c.Args)-1] != "--allow-insecure-kp" {
				t.Errorf("container: image %s, args %v", c.Image, c.Args)
			}
			trust := ""
			for _, e := range c.Env {
				if e.Name == "SSL_CERT_FILE" {
					trust = e.Value
				}
			}
			if ip == "" {
				if trust != "" || len(dss[0].Spec.Template.Spec.HostAliases) > 0 || len(cms) > 0 {
					t.Errorf("without mockkp the overlay still adds the public names or the CA")
				}
				return
			}
			checkPublicNames(t, dss[0], cms, ip, ca)
			if trust != "/etc/keysync-lab-ca/ca.crt" {
				t.Errorf("SSL_CERT_FILE = %q", trust)
			}
			mounted := false
			for _, m := range c.VolumeMounts {
				mounted = mounted || (m.MountPath == "/etc/keysync-lab-ca" && m.ReadOnly)
			}
			if !mounted {
				t.Errorf("the lab CA is not mounted: %+v", c.VolumeMounts)
			}
		})
	}
}

// TestForeignOverlay wraps a synchronizer's kustomize dir of two DaemonSets (one without
// hostAliases, one with its own): both get the public names, b keeps its own alias, nothing
// else of theirs changes.
func TestForeignOverlay(t *testing.T) {
	kubectl := kubectlBin(t)
	root := t.TempDir()
	theirs := filepath.Join(root, "theirs")
	if err := os.MkdirAll(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	ds := func(name, extra string) string {
		return "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: " + name + ", namespace: " + names.Namespace + "}\n" +
			"spec:\n  selector: {matchLabels: {app: " + name + "}}\n  template:\n    metadata: {labels: {app: " + name + "}}\n" +
			"    spec:\n" + extra + "      containers: [{name: s, image: theirs:1}]\n"
	}
	files := map[string]string{
		"kustomization.yaml": "resources: [a.yaml, b.yaml]\n",
		"a.yaml":             ds("a", ""),
		"b.yaml":             ds("b", "      hostAliases: [{ip: 10.0.0.1, hostnames: [theirs.example.test]}]\n"),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(theirs, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	overlay := filepath.Join(root, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	const ca = "-----BEGIN CERTIFICATE-----\nlab\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(filepath.Join(overlay, "ca.crt"), []byte(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(foreignOverlay("../theirs", "172.18.0.9", "f00d")), 0o644); err != nil {
		t.Fatal(err)
	}
	dss, cms := kustomize(t, kubectl, overlay)
	if len(dss) != 2 {
		t.Fatalf("%d DaemonSets, want 2", len(dss))
	}
	for _, d := range dss {
		var keep []corev1.HostAlias
		if d.Name == "b" {
			keep = []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"theirs.example.test"}}}
		}
		checkPublicNames(t, d, cms, "172.18.0.9", ca, keep...)
		if c := d.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "theirs:1" || len(c[0].Env) != 0 {
			t.Errorf("DaemonSet %s: containers changed: %+v", d.Name, c)
		}
	}
}
