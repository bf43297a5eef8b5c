package controller_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/keyprotect-go-client/iam"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
)

// TestOutagesNeverRemoveAKey (issue 13, defect 2): only a definite answer about the key itself
// removes a synced key. IAM or Key Protect answering an HTML error page, 5xx, 429, a dropped
// connection or a rejected API key keep the file, return an error (retry with backoff) and
// report UnwrapFailed; once the service recovers, the new version lands.
func TestOutagesNeverRemoveAKey(t *testing.T) {
	// The official client's own IAM retries are exhausted at once (as after a long outage).
	oldMax := iam.RetryMax
	iam.RetryMax = 0
	t.Cleanup(func() { iam.RetryMax = oldMax })
	env := mockkptest.Start(t)
	keyA, keyB := testkeys.PKCS8(t), testkeys.PKCS8(t)
	tests := []struct {
		name       string
		faults     []mockkp.Fault
		apiKey     string        // a config with this API key during the outage
		retryAfter time.Duration // RetryAfter(err) must be at least this
	}{
		{name: "IAM HTML 503", faults: []mockkp.Fault{{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 503, Count: 100}}},
		{name: "IAM HTML 429 with Retry-After", faults: []mockkp.Fault{{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 429,
			RetryAfter: mockkp.Duration(3 * time.Second), Count: 100}}, retryAfter: 3 * time.Second},
		{name: "IAM HTML 404 from a gateway", faults: []mockkp.Fault{{Op: mockkp.OpToken, Kind: mockkp.FaultHTML, Status: 404, Count: 100}}},
		{name: "IAM JSON 500", faults: []mockkp.Fault{{Op: mockkp.OpToken, Kind: mockkp.FaultStatus, Status: 500, Count: 100}}},
		{name: "IAM connection dropped", faults: []mockkp.Fault{{Op: mockkp.OpToken, Kind: mockkp.FaultDrop, Count: 100}}},
		{name: "wrong API key", apiKey: "not-the-api-key"},
		{name: "KP HTML 503", faults: []mockkp.Fault{{Op: mockkp.OpUnwrap, Kind: mockkp.FaultHTML, Status: 503, Count: 100}}},
		{name: "KP HTML 404 from a gateway", faults: []mockkp.Fault{{Op: mockkp.OpUnwrap, Kind: mockkp.FaultHTML, Status: 404, Count: 100}}},
		{name: "KP JSON 429 with Retry-After", faults: []mockkp.Fault{{Op: mockkp.OpUnwrap, Kind: mockkp.FaultStatus, Status: 429,
			RetryAfter: mockkp.Duration(2 * time.Second), Count: 100}}, retryAfter: 2 * time.Second},
		{name: "KP JSON 401 (token refused)", faults: []mockkp.Fault{{Op: mockkp.OpUnwrap, Kind: mockkp.FaultStatus, Status: 401, Count: 100}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(env.Server.ClearFaults)
			h := newHarness(t, controller.KeyProtect(nil))
			h.r.SetConfig(configSecret(t, env.Config()))
			a := kpSecret("s", env.RootKeyID, env.Ciphertext(t, keyA))
			if err := h.sync(a); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(h.keys, keyfile.Name(ns, "s", "kp-key"))
			// A restart: a new client without a cached token meets the outage.
			h.restart()
			cfg := env.Config()
			if tc.apiKey != "" {
				cfg.APIKey = tc.apiKey
			}
			h.r.SetConfig(configSecret(t, cfg))
			b := kpSecret("s", env.RootKeyID, env.Ciphertext(t, keyB))
			b.UID = a.UID
			for _, f := range tc.faults {
				addFault(t, env, f)
			}
			err := h.sync(b)
			if err == nil {
				t.Fatalf("Sync during the outage returned nil: not retried")
			}
			if got := controller.RetryAfter(err); got < tc.retryAfter {
				t.Errorf("RetryAfter = %v, want >= %v", got, tc.retryAfter)
			}
			if data, err := os.ReadFile(file); err != nil || string(data) != string(keyA) {
				t.Fatalf("the synced key did not stay through the outage: %v", err)
			}
			if got := h.events.reasons("s"); got[len(got)-1] != controller.ReasonUnwrapFailed {
				t.Errorf("events %v, want UnwrapFailed last", got)
			}
			for _, e := range h.events.events {
				if strings.Contains(e.msg, "<html") || strings.Contains(e.msg, env.APIKey) {
					t.Errorf("Event quotes the error page or the API key: %s", e.msg)
				}
			}
			env.Server.ClearFaults()
			h.r.SetConfig(configSecret(t, env.Config()))
			if err := h.sync(b); err != nil {
				t.Fatalf("Sync after recovery: %v", err)
			}
			if data, _ := os.ReadFile(file); string(data) != string(keyB) {
				t.Errorf("the new version did not land after recovery")
			}
		})
	}
}
