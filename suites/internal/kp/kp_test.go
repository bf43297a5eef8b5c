package kp

import (
	"context"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func TestWrapAndCounters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := mockkptest.Start(t)
	pemData := []byte("-----BEGIN PRIVATE KEY-----\nnot checked by wrap\n-----END PRIVATE KEY-----\n")

	before, err := Counters(ctx, nil, env.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Wrap(ctx, env.Config(), env.RootKeyID, pemData)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kpkey.NewClient(env.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kpkey.Unwrap(ctx, client, env.RootKeyID, ct)
	if err != nil || string(got) != string(pemData) {
		t.Fatalf("unwrap: %v", err)
	}
	after, err := Counters(ctx, nil, env.AdminURL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if d := after["wrap"] - before["wrap"]; d != 1 {
		t.Errorf("wrap counted %d, want 1", d)
	}
	if d := after["unwrap"] - before["unwrap"]; d != 1 {
		t.Errorf("unwrap counted %d, want 1", d)
	}

	if _, err := Wrap(ctx, env.Config(), "00000000-0000-4000-8000-000000000000", pemData); err == nil {
		t.Error("wrap with an unknown root key succeeded")
	}
	if _, err := Counters(ctx, nil, env.URL+"/nothing-here"); err == nil || !strings.Contains(err.Error(), "counters") {
		t.Errorf("bad admin URL: err = %v", err)
	}
}

func TestRotateAndFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := mockkptest.Start(t)
	client, err := kpkey.NewClient(env.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	version := func() string {
		t.Helper()
		k, err := client.GetKeyMetadata(ctx, env.RootKeyID)
		if err != nil || k.KeyVersion == nil {
			t.Fatalf("metadata: %v", err)
		}
		return k.KeyVersion.ID
	}
	v1 := version()
	if err := Rotate(ctx, env.Config(), env.RootKeyID); err != nil {
		t.Fatal(err)
	}
	if v2 := version(); v2 == v1 {
		t.Errorf("rotate left the current version at %s", v1)
	}
	if err := Rotate(ctx, env.Config(), "00000000-0000-4000-8000-000000000000"); err == nil {
		t.Error("rotating an unknown root key succeeded")
	}

	if err := AddFault(ctx, nil, env.AdminURL, Fault{Op: "metadata", Kind: "drop", For: "1m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetKeyMetadata(ctx, env.RootKeyID); err == nil {
		t.Error("metadata succeeded under a drop fault")
	}
	if err := ClearFaults(ctx, nil, env.AdminURL); err != nil {
		t.Fatal(err)
	}
	_ = version()
	if err := AddFault(ctx, nil, env.AdminURL, Fault{Op: "explode", Kind: "drop"}); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("bad fault: err = %v", err)
	}
}
