// Package secrets builds the Secrets the suites create (type key, type kp-key and the
// keyprotect-config Secret) and creates them through a client that records every object in a
// tracker for LIFO cleanup. Must* variants fail the test; the plain ones return errors for
// negative tests.
package secrets

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/internal/tracker"
)

// LabelManagedBy marks every object the suites create, so leaks can be found and removed.
const LabelManagedBy = names.LabelManagedBy

// ManagedByValue is LabelManagedBy's value.
const ManagedByValue = names.ManagedBy

// LabelRunID carries the run ID of the run that created the object.
const LabelRunID = names.LabelRunID

func meta(ns, name, runID string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{LabelManagedBy: ManagedByValue, LabelRunID: runID}}
}

// Key returns a Secret of type key whose data entries are PEM private keys.
func Key(ns, name, runID string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: meta(ns, name, runID), Type: corev1.SecretType(kpkey.SecretTypeKey), Data: data}
}

// Opaque returns a Secret of type Opaque, which a synchronizer ignores (a probe of the
// cluster's storage rather than a key).
func Opaque(ns, name, runID string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: meta(ns, name, runID), Type: corev1.SecretTypeOpaque, Data: data}
}

// KPKey returns a Secret of type kp-key holding a Key Protect-wrapped key.
func KPKey(ns, name, runID, rootKeyID, ciphertext string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: meta(ns, name, runID), Type: corev1.SecretType(kpkey.SecretTypeKPKey),
		Data: map[string][]byte{kpkey.RootKeyIDKey: []byte(rootKeyID), kpkey.CiphertextKey: []byte(ciphertext)}}
}

// KPConfig returns the keyprotect-config Secret for cfg (validated).
func KPConfig(ns, runID string, cfg kpkey.Config) (*corev1.Secret, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to encode keyprotect config: %w", err)
	}
	return &corev1.Secret{ObjectMeta: meta(ns, kpkey.ConfigSecretName, runID), Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{kpkey.ConfigKey: data}}, nil
}

// TB is the part of testing.TB the Must* helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Client creates Secrets and records how to undo each creation in Tracker.
type Client struct {
	Clientset kubernetes.Interface
	Tracker   *tracker.Tracker
	// AfterDelete, when set, runs after a tracked Secret is deleted at cleanup (the suites
	// wait there for the synchronizer to remove the Secret's key files).
	AfterDelete func(ctx context.Context, s *corev1.Secret) error
}

// Create creates s and records its deletion.
func (c Client) Create(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	out, err := c.Clientset.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to create Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.Tracker.Add("Secret "+s.Namespace+"/"+s.Name, func(ctx context.Context) error {
		return c.deleteAndSettle(ctx, out)
	})
	return out, nil
}

// MustCreate is Create that fails the test on error.
func (c Client) MustCreate(ctx context.Context, t TB, s *corev1.Secret) *corev1.Secret {
	t.Helper()
	out, err := c.Create(ctx, s)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// Delete deletes a Secret now (not at cleanup); a Secret already gone is not an error.
func (c Client) Delete(ctx context.Context, ns, name string) error {
	err := c.Clientset.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to delete Secret %s/%s: %w", ns, name, err)
	}
	return nil
}

func (c Client) deleteAndSettle(ctx context.Context, s *corev1.Secret) error {
	if err := c.Delete(ctx, s.Namespace, s.Name); err != nil {
		return err
	}
	if c.AfterDelete != nil {
		return c.AfterDelete(ctx, s)
	}
	return nil
}

// Put creates s, or replaces an existing Secret of the same name; cleanup restores what was
// there before (or deletes s). It is for singletons such as keyprotect-config.
func (c Client) Put(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	secrets := c.Clientset.CoreV1().Secrets(s.Namespace)
	prev, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return c.Create(ctx, s)
	case err != nil:
		return nil, fmt.Errorf("failed to get Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	upd := prev.DeepCopy()
	upd.Type, upd.Data, upd.StringData = s.Type, s.Data, nil
	out, err := secrets.Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to update Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.Tracker.Add("restore Secret "+s.Namespace+"/"+s.Name, func(ctx context.Context) error {
		cur, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("failed to get Secret: %w", err)
		}
		cur.Data = prev.Data
		if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("failed to restore Secret: %w", err)
		}
		return nil
	})
	return out, nil
}

// MustPut is Put that fails the test on error.
func (c Client) MustPut(ctx context.Context, t TB, s *corev1.Secret) *corev1.Secret {
	t.Helper()
	out, err := c.Put(ctx, s)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// Update replaces the data of an existing Secret (rotation). It is not tracked: the Secret's
// own creation already is.
func (c Client) Update(ctx context.Context, ns, name string, data map[string][]byte) (*corev1.Secret, error) {
	secrets := c.Clientset.CoreV1().Secrets(ns)
	cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to get Secret %s/%s: %w", ns, name, err)
	}
	cur.Data = data
	out, err := secrets.Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to update Secret %s/%s: %w", ns, name, err)
	}
	return out, nil
}
