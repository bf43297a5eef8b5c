package mockkptest_test

import (
	"bytes"
	"testing"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func TestStartRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		pem  []byte
	}{
		{"small", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
		{"large", bytes.Repeat([]byte("k"), 5000)},
	}
	env := mockkptest.Start(t)
	if err := env.Config().Validate(); err != nil {
		t.Fatalf("Config() is invalid: %v", err)
	}
	c := env.Client(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := env.Ciphertext(t, tc.pem)
			got, err := kpkey.Unwrap(t.Context(), c, env.RootKeyID, ct)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			if !bytes.Equal(got, tc.pem) {
				t.Fatalf("Unwrap returned %d bytes, want the %d wrapped", len(got), len(tc.pem))
			}
		})
	}
	if n := env.Server.Requests(mockkp.OpUnwrap); n != int64(len(tests)) {
		t.Errorf("Requests(unwrap) = %d, want %d", n, len(tests))
	}
	if n := env.Server.Requests(mockkp.OpToken); n < 1 {
		t.Errorf("Requests(token) = %d, want at least 1", n)
	}
}
