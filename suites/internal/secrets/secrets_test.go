package secrets

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/suites/internal/tracker"
)

func TestBuilders(t *testing.T) {
	t.Parallel()
	k := Key("ns", "a", "run1", map[string][]byte{"k.pem": []byte("PEM")})
	if string(k.Type) != kpkey.SecretTypeKey || k.Labels[LabelRunID] != "run1" || k.Labels[LabelManagedBy] != ManagedByValue {
		t.Fatalf("key Secret %+v", k)
	}
	kp := KPKey("ns", "b", "run1", "root", "ct")
	if string(kp.Type) != kpkey.SecretTypeKPKey || string(kp.Data[kpkey.RootKeyIDKey]) != "root" || string(kp.Data[kpkey.CiphertextKey]) != "ct" {
		t.Fatalf("kp-key Secret %+v", kp)
	}
	if _, err := KPConfig("ns", "run1", kpkey.Config{URL: "http://x"}); err == nil {
		t.Fatal("KPConfig accepted an incomplete config")
	}
	cfg := kpkey.Config{URL: "http://127.0.0.1:1", InstanceID: "i", APIKey: "k", TokenURL: "http://127.0.0.1:1/t"}
	s, err := KPConfig("ns", "run1", cfg)
	if err != nil || s.Name != kpkey.ConfigSecretName {
		t.Fatalf("KPConfig: %v", err)
	}
	got, err := kpkey.ParseConfig(s.Data[kpkey.ConfigKey])
	if err != nil || got != cfg {
		t.Fatalf("config.json round trip: %+v, %v", got, err)
	}
}

func TestClientAgainstAPIServer(t *testing.T) {
	t.Parallel()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ks"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pre-existing keyprotect-config must come back after cleanup.
	orig, _ := json.Marshal(kpkey.Config{URL: "http://orig", InstanceID: "i", APIKey: "k"})
	if _, err := cs.CoreV1().Secrets("ks").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: kpkey.ConfigSecretName, Namespace: "ks"},
		Data: map[string][]byte{kpkey.ConfigKey: orig}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var tr tracker.Tracker
	var settled []string
	c := Client{Clientset: cs, Tracker: &tr, AfterDelete: func(_ context.Context, s *corev1.Secret) error {
		settled = append(settled, s.Name)
		return nil
	}}
	c.MustCreate(ctx, t, Key("ks", "a", "r", map[string][]byte{"k": []byte("1")}))
	cfgSecret, err := KPConfig("ks", "r", kpkey.Config{URL: "http://new", InstanceID: "i", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	c.MustPut(ctx, t, cfgSecret)
	c.MustCreate(ctx, t, KPKey("ks", "b", "r", "root", "ct"))
	if _, err := c.Update(ctx, "ks", "a", map[string][]byte{"k": []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, Key("ks", "a", "r", nil)); err == nil || !strings.Contains(err.Error(), "failed to create Secret ks/a") {
		t.Fatalf("duplicate create: %v", err)
	}
	if tr.Len() != 3 {
		t.Fatalf("tracked %d, want 3", tr.Len())
	}
	if err := tr.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(settled, ",") != "b,a" {
		t.Fatalf("deleted in order %v, want b,a (LIFO)", settled)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := cs.CoreV1().Secrets("ks").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Secret %s still there: %v", name, err)
		}
	}
	back, err := cs.CoreV1().Secrets("ks").Get(ctx, kpkey.ConfigSecretName, metav1.GetOptions{})
	if err != nil || string(back.Data[kpkey.ConfigKey]) != string(orig) {
		t.Fatalf("keyprotect-config not restored: %v", err)
	}
	if err := c.Delete(ctx, "ks", "gone"); err != nil {
		t.Fatalf("deleting a missing Secret: %v", err)
	}
}
