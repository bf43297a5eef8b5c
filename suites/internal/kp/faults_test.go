package kp

import (
	"context"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// TestFaults: faults are queued, listed with their remaining counts, applied to the next
// requests of their op, and cleared; a fault mockkp refuses is an error naming it.
func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := mockkptest.Start(t)
	pemData := []byte("-----BEGIN PRIVATE KEY-----\nnot checked by wrap\n-----END PRIVATE KEY-----\n")
	if err := AddFault(ctx, nil, env.AdminURL, Fault{Op: "wrap", Kind: "status", Status: 400, RetryAfter: "1s"}); err != nil {
		t.Fatal(err)
	}
	if err := AddFault(ctx, nil, env.AdminURL, Fault{Op: "unwrap", Kind: "html", Status: 502, Count: 3}); err != nil {
		t.Fatal(err)
	}
	left, err := PendingFaults(ctx, nil, env.AdminURL)
	if err != nil || len(left) != 2 || left[1].Count != 3 || left[0].RetryAfter != "1s" {
		t.Fatalf("PendingFaults = %+v, %v", left, err)
	}
	if _, err := Wrap(ctx, env.Config(), env.RootKeyID, pemData); err == nil {
		t.Error("wrap succeeded through a 400 fault")
	}
	if left, _ = PendingFaults(ctx, nil, env.AdminURL); len(left) != 1 {
		t.Errorf("after one wrap: %+v, want the unwrap fault only", left)
	}
	if err := ClearFaults(ctx, nil, env.AdminURL); err != nil {
		t.Fatal(err)
	}
	if left, _ = PendingFaults(ctx, nil, env.AdminURL); len(left) != 0 {
		t.Errorf("after clear: %+v", left)
	}
	if _, err := Wrap(ctx, env.Config(), env.RootKeyID, pemData); err != nil {
		t.Errorf("wrap after clear: %v", err)
	}
	err = AddFault(ctx, nil, env.AdminURL, Fault{Op: "unwrap", Kind: "teleport"})
	if err == nil || !strings.Contains(err.Error(), "teleport") {
		t.Errorf("a bad fault: %v", err)
	}
}
