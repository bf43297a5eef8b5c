// Package deploy holds the addon's kustomize manifests; this test pins them to the runbook.
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	ns   = "image-key-synchronizer"
	name = "addon-image-key-synchronizer"
)

func load(t *testing.T) []runtime.Object {
	t.Helper()
	var k struct {
		Resources []string `json:"resources"`
	}
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Clean(r))
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestExactlyTheRunbooksResources(t *testing.T) {
	var got []string
	for _, o := range load(t) {
		switch o := o.(type) {
		case *corev1.Namespace:
			got = append(got, "Namespace/"+o.Name)
		case *corev1.ServiceAccount:
			got = append(got, "ServiceAccount/"+o.Namespace+"/"+o.Name)
		case *rbacv1.Role:
			got = append(got, "Role/"+o.Namespace+"/"+o.Name)
			want := []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			}
			if len(o.Rules) != len(want) {
				t.Fatalf("Role rules %+v", o.Rules)
			}
			for i := range want {
				if !slices.Equal(o.Rules[i].APIGroups, want[i].APIGroups) || !slices.Equal(o.Rules[i].Resources, want[i].Resources) ||
					!slices.Equal(o.Rules[i].Verbs, want[i].Verbs) || len(o.Rules[i].ResourceNames) > 0 {
					t.Errorf("Role rule %d = %+v, want %+v", i, o.Rules[i], want[i])
				}
			}
		case *rbacv1.RoleBinding:
			got = append(got, "RoleBinding/"+o.Namespace+"/"+o.Name)
			if o.RoleRef.Kind != "Role" || o.RoleRef.Name != name || len(o.Subjects) != 1 ||
				o.Subjects[0].Kind != "ServiceAccount" || o.Subjects[0].Name != name || o.Subjects[0].Namespace != ns {
				t.Errorf("RoleBinding %+v %+v", o.RoleRef, o.Subjects)
			}
		case *appsv1.DaemonSet:
			got = append(got, "DaemonSet/"+o.Namespace+"/"+o.Name)
			checkDaemonSet(t, o)
		default:
			t.Errorf("unexpected resource %T", o)
		}
	}
	want := []string{"Namespace/" + ns, "ServiceAccount/" + ns + "/" + name, "Role/" + ns + "/" + name,
		"RoleBinding/" + ns + "/" + name, "DaemonSet/" + ns + "/" + name}
	if !slices.Equal(got, want) {
		t.Errorf("resources %v, want %v", got, want)
	}
}

func checkDaemonSet(t *testing.T, d *appsv1.DaemonSet) {
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != name {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v: want one Exists toleration so every node runs a pod", spec.Tolerations)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkLeastPrivilege(t, spec)
	arg := func(flag string) string {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
				return v
			}
		}
		return ""
	}
	keys, staging := arg("keys-dir"), arg("staging-dir")
	if keys != "/etc/crio/keys/synced" || staging == "" || strings.HasPrefix(staging+"/", "/etc/crio/keys/") {
		t.Errorf("keys-dir %q staging-dir %q: staging must be outside CRI-O's /etc/crio/keys", keys, staging)
	}
	// One hostPath mount holding both directories, so that rename(2) works.
	var mount string
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(keys+"/", m.MountPath+"/") && strings.HasPrefix(staging+"/", m.MountPath+"/") && !m.ReadOnly {
			mount = m.Name
		}
	}
	var hostPath string
	for _, v := range spec.Volumes {
		if v.Name == mount && v.HostPath != nil {
			hostPath = v.HostPath.Path
		}
	}
	if hostPath != "/etc/crio" {
		t.Errorf("no writable hostPath mount holding both keys and staging dirs (got %q)", hostPath)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("requests/limits missing: %+v", c.Resources)
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			envs[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if envs["POD_NAMESPACE"] != "metadata.namespace" || envs["NODE_NAME"] != "spec.nodeName" {
		t.Errorf("downward API env %v", envs)
	}
}

// checkLeastPrivilege (issue 13, defect 7): the synchronizer runs as a non-root user with no
// capability and the runtime's seccomp profile; only a short init container is root, with
// CAP_CHOWN alone, and prepares the same two directories for exactly that user.
func checkLeastPrivilege(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil ||
		spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile %+v, want RuntimeDefault", spec.SecurityContext)
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsGroup == nil || *sc.RunAsGroup == 0 ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Fatalf("synchronizer securityContext %+v: want a non-root user and group, runAsNonRoot", sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		(sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("synchronizer securityContext %+v: want every capability dropped, none added, no escalation, read-only root", sc)
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want the one that prepares the directories", len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	isc := ic.SecurityContext
	if isc == nil || isc.Capabilities == nil || !slices.Equal(isc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(isc.Capabilities.Add, []corev1.Capability{"CHOWN"}) || isc.AllowPrivilegeEscalation == nil || *isc.AllowPrivilegeEscalation ||
		(isc.Privileged != nil && *isc.Privileged) {
		t.Errorf("init container securityContext %+v: want CAP_CHOWN only", isc)
	}
	args := map[string]string{}
	for _, a := range ic.Args {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		args[k] = v
	}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if (k == "keys-dir" || k == "staging-dir") && args[k] != v {
			t.Errorf("init container --%s=%q, synchronizer %q", k, args[k], v)
		}
	}
	if want := fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup); args["prepare-for"] != want || ic.Image != c.Image {
		t.Errorf("init container --prepare-for=%q image %q, want %q and the synchronizer's image", args["prepare-for"], ic.Image, want)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--allow-insecure-kp") {
			t.Errorf("production manifests pass %s", a)
		}
	}
}
