// Package deploy holds the addon's kustomize manifests; this test pins them to the runbook.
package deploy

import (
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
