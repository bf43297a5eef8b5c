package events

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kubetest"
)

func TestWait(t *testing.T) {
	t.Parallel()
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := func(name, obj, reason string) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Secret", Namespace: "default", Name: obj},
			Reason:         reason, Type: corev1.EventTypeWarning, Message: "m"}
	}
	for _, e := range []*corev1.Event{ev("e1", "s1", "KeyRejected"), ev("e2", "other", "UnwrapFailed")} {
		if _, err := cs.CoreV1().Events("default").Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Wait(ctx, cs, "Secret", "default", "s1", "KeyRejected", 5*time.Second, 50*time.Millisecond)
	if err != nil || got.Name != "e1" {
		t.Fatalf("Wait = %v, %v", got, err)
	}
	// A late Event is found; a wrong reason times out naming what was seen.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = cs.CoreV1().Events("default").Create(ctx, ev("e3", "s2", "KeySynced"), metav1.CreateOptions{})
	}()
	if _, err := Wait(ctx, cs, "Secret", "default", "s2", "KeySynced", 10*time.Second, 50*time.Millisecond); err != nil {
		t.Fatalf("late Event: %v", err)
	}
	_, err = Wait(ctx, cs, "Secret", "default", "s1", "UnwrapFailed", 500*time.Millisecond, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "seen reasons: [KeyRejected]") {
		t.Fatalf("wrong reason: err = %v", err)
	}
}
