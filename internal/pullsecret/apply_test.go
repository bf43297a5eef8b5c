package pullsecret_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/pullsecret"
)

// labConfig returns the hand-written .dockerconfigjson for the two lab host names and an auth
// value computed outside Go (printf %s iamapikey:KEY | base64).
func labConfig(key, auth string) string {
	e := `{"auth":"` + auth + `","password":"` + key + `","username":"iamapikey"}`
	return `{"auths":{"alias.lab.test:5000":` + e + `,"registry.lab.test:5000":` + e + `}}`
}

func mustCreate[T any](t *testing.T, create func() (T, error)) {
	t.Helper()
	if _, err := create(); err != nil {
		t.Fatal(err)
	}
}

func pullRefs(names ...string) []corev1.LocalObjectReference {
	var r []corev1.LocalObjectReference
	for _, n := range names {
		r = append(r, corev1.LocalObjectReference{Name: n})
	}
	return r
}

func pod(ns, name string, pullSecrets ...string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
		Containers:       []corev1.Container{{Name: "c", Image: "registry.lab.test:5000/app:1"}},
		ImagePullSecrets: pullRefs(pullSecrets...),
	}}
}

func serviceAccount(ns, name string, pullSecrets ...string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, ImagePullSecrets: pullRefs(pullSecrets...)}
}

func TestCreateRotateAgainstAPIServer(t *testing.T) {
	t.Parallel()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	core := cs.CoreV1()
	for _, ns := range []string{"apps", "other"} {
		mustCreate(t, func() (*corev1.Namespace, error) {
			return core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		})
	}
	servers := []string{"registry.lab.test:5000", "alias.lab.test:5000"}
	build := func(name, key string) *corev1.Secret {
		sec, err := pullsecret.Build("apps", name, servers, key)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	data := func(name string) string {
		t.Helper()
		s, err := core.Secrets("apps").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data[corev1.DockerConfigJsonKey])
	}
	v1 := labConfig("dummy-apikey-0123", "aWFtYXBpa2V5OmR1bW15LWFwaWtleS0wMTIz")
	v2 := labConfig("dummy-apikey-4567", "aWFtYXBpa2V5OmR1bW15LWFwaWtleS00NTY3")

	// Create, then a second create is refused and changes nothing.
	if err := pullsecret.Create(ctx, cs, build("regcred", "dummy-apikey-0123")); err != nil {
		t.Fatal(err)
	}
	if got := data("regcred"); got != v1 {
		t.Fatalf("created data\n%s\nwant\n%s", got, v1)
	}
	if err := pullsecret.Create(ctx, cs, build("regcred", "dummy-apikey-4567")); !errors.Is(err, pullsecret.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if got := data("regcred"); got != v1 {
		t.Fatalf("a refused create changed the data:\n%s", got)
	}

	// Rotating a missing Secret creates nothing.
	if _, err := pullsecret.Rotate(ctx, cs, build("missing", "dummy-apikey-4567")); !errors.Is(err, pullsecret.ErrNotFound) {
		t.Fatalf("rotate missing: %v", err)
	}
	if _, err := core.Secrets("apps").Get(ctx, "missing", metav1.GetOptions{}); err == nil {
		t.Fatal("rotate created the missing Secret")
	}

	// Rotating a Secret of another type is refused.
	mustCreate(t, func() (*corev1.Secret, error) {
		return core.Secrets("apps").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "opaque", Namespace: "apps"},
			Data: map[string][]byte{"x": []byte("y")}}, metav1.CreateOptions{})
	})
	if _, err := pullsecret.Rotate(ctx, cs, build("opaque", "dummy-apikey-4567")); err == nil || !strings.Contains(err.Error(), `its type is "Opaque"`) {
		t.Fatalf("rotate opaque: %v", err)
	}

	// References: pods and ServiceAccounts in the namespace that name regcred.
	for _, p := range []*corev1.Pod{pod("apps", "web", "other-secret", "regcred"), pod("apps", "api", "regcred"),
		pod("apps", "plain"), pod("other", "elsewhere", "regcred")} {
		mustCreate(t, func() (*corev1.Pod, error) { return core.Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}) })
	}
	for _, sa := range []*corev1.ServiceAccount{serviceAccount("apps", "puller", "regcred"), serviceAccount("apps", "nopull"),
		serviceAccount("other", "puller", "regcred")} {
		mustCreate(t, func() (*corev1.ServiceAccount, error) {
			return core.ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{})
		})
	}
	before := getSecret(t, cs, "regcred")
	before.Labels = map[string]string{"team": "a"}
	if _, err := core.Secrets("apps").Update(ctx, before, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	refs, err := pullsecret.Rotate(ctx, cs, build("regcred", "dummy-apikey-4567"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(refs.Pods, []string{"api", "web"}) || !slices.Equal(refs.ServiceAccounts, []string{"puller"}) {
		t.Fatalf("references = %+v", refs)
	}
	after := getSecret(t, cs, "regcred")
	if got := string(after.Data[corev1.DockerConfigJsonKey]); got != v2 || len(after.Data) != 1 {
		t.Fatalf("rotated data\n%s\nwant\n%s", got, v2)
	}
	if after.UID != before.UID || after.Labels["team"] != "a" {
		t.Fatalf("rotation did not happen in place: uid %s → %s, labels %v", before.UID, after.UID, after.Labels)
	}
}

func getSecret(t *testing.T, cs kubernetes.Interface, name string) *corev1.Secret {
	t.Helper()
	s, err := cs.CoreV1().Secrets("apps").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
