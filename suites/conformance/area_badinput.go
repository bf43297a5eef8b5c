// Area bad-input: bad Secrets are rejected with Events, write nothing and break no other key.

package conformance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/suites/internal/events"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// 7. Bad Secrets are rejected with Events, write nothing, and break no other key.
func featureBadInput() Feature {
	type bad struct {
		what, reason string
		secret       *corev1.Secret
	}
	var bads []bad
	var snapshot []string
	return Feature{
		Name: "bad Secrets are rejected, write nothing and break no other key", Area: AreaBadInput,
		Setup: func(ctx context.Context, t T, c *Context) {
			s := newScope(ctx, t, c)
			c.requireKP(t)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.syncKey(ctx, t, s, "good-a", c.Fixtures.A)
			c.putKPConfig(ctx, t, s)
			var err error
			snapshot, err = c.snapshots(ctx, t)
			if err != nil {
				t.Fatalf("%v", err)
			}
			pub, err := publicKeyPEM()
			if err != nil {
				t.Fatalf("%v", err)
			}
			unknownRoot := fmt.Sprintf("00000000-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffffffff)
			bads = []bad{
				{"invalid PEM", ReasonKeyRejected, c.keySecret("bad-pem", []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"))},
				{"public key", ReasonKeyRejected, c.keySecret("bad-pub", pub)},
				{"unknown root key", ReasonUnwrapFailed, secrets.KPKey(c.Namespace, c.nameFor("bad-root"), c.RunID, unknownRoot,
					base64.StdEncoding.EncodeToString([]byte("keysync-suites: not a real ciphertext")))},
			}
			for _, b := range bads {
				s.secrets.MustCreate(ctx, t, b.secret)
			}
		},
		Assess: []Step{
			{Name: "each bad Secret gets its Event (KeyRejected or UnwrapFailed)", Fn: func(ctx context.Context, t T, c *Context) {
				for _, b := range bads {
					if _, err := events.Wait(ctx, c.Client, "Secret", b.secret.Namespace, b.secret.Name, b.reason, c.syncTimeout(), c.pollInterval()); err != nil {
						t.Errorf("%s: %v", b.what, err)
					}
				}
			}},
			{Name: "nothing is written for them", Fn: func(ctx context.Context, t T, c *Context) {
				now, err := c.snapshots(ctx, t)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if !slices.Equal(now, snapshot) {
					t.Fatalf("the keys tree changed after bad Secrets: appeared %q, disappeared %q", minus(now, snapshot), minus(snapshot, now))
				}
			}},
			{Name: "other keys still pull", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
		},
	}
}

// publicKeyPEM returns a fresh public key in PEM: parseable, but not a private key.
func publicKeyPEM() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// minus returns the lines of a that are not in b.
func minus(a, b []string) []string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, l)
		}
	}
	return out
}
