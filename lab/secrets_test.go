package lab

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestRewriteSecrets: every Secret is updated as read; one deleted or changed meanwhile is
// skipped, any other failure stops with the Secret's name.
func TestRewriteSecrets(t *testing.T) {
	secret := func(ns, name string) runtime.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"k": []byte("v")}}
	}
	tests := []struct {
		name    string
		failOn  string
		failErr error
		want    int
		wantErr string
	}{
		{name: "all", want: 3},
		{name: "one changed meanwhile", failOn: "b", failErr: errConflict(), want: 2},
		{name: "a failure", failOn: "b", failErr: os.ErrPermission, wantErr: "failed to rewrite Secret ns1/b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(secret("ns1", "a"), secret("ns1", "b"), secret("ns2", "c"))
			var updated []string
			client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
				s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
				if s.Name == tc.failOn {
					return true, nil, tc.failErr
				}
				updated = append(updated, s.Namespace+"/"+s.Name)
				return false, nil, nil
			})
			n, err := RewriteSecrets(context.Background(), client)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("rewriteSecrets = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want || len(updated) != tc.want {
				t.Fatalf("rewriteSecrets = %d, %v (updated %v), want %d", n, err, updated, tc.want)
			}
		})
	}
}

func errConflict() error {
	return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "b", os.ErrExist)
}
