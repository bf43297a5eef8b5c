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
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysync-dev/keysync/suites/internal/events"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// 7. Bad Secrets write nothing and break no other key (required), and get their Events
// (recommended). A good Secret created after the bad ones (key B) shows when the synchronizer
// has handled them, without relying on its Events.
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
			// A keyprotect-config for the unknown root key's UnwrapFailed: the cluster's own
			// (never changed; no key is wrapped, so no --kp-* settings are needed), else mockkp's.
			c.useKP(ctx, t, s, false)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			c.syncKey(ctx, t, s, "good-a", c.Fixtures.A)
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
			s.secrets.MustCreate(ctx, t, c.keySecret("after-bad", c.Fixtures.B.Key))
		},
		Assess: []Step{
			{Name: "nothing is written for them (only the good Secret created after them adds its key)", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				got, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.B.Key))
				if err != nil {
					t.Fatalf("the good Secret created after the bad ones: %v", err)
				}
				now, err := c.snapshots(ctx, t)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if rest := withoutFiles(now, got); !slices.Equal(rest, snapshot) {
					t.Fatalf("the keys tree changed after bad Secrets (besides the good Secret's key):\nbefore: %q\nafter:  %q", snapshot, rest)
				}
			}},
			{Name: "other keys still pull", Profile: ProfileRequired, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
			}},
			{Name: "each bad Secret gets its Event (KeyRejected or UnwrapFailed)", Profile: ProfileRecommended, Independent: true, Fn: func(ctx context.Context, t T, c *Context) {
				for _, b := range bads {
					if _, err := events.Wait(ctx, c.Client, "Secret", b.secret.Namespace, b.secret.Name, b.reason, c.syncTimeout(), c.pollInterval()); err != nil {
						t.Errorf("%s: %v", b.what, err)
					}
				}
			}},
		},
	}
}

// withoutFiles drops from snapshot lines ("node: TYPE MODE SIZE PATH") the files in got
// (node → entry).
func withoutFiles(lines []string, got map[string]nodedriver.Entry) []string {
	var out []string
	for _, l := range lines {
		node, rest, _ := strings.Cut(l, ": ")
		if e, ok := got[node]; ok && strings.HasPrefix(rest, string(nodedriver.TypeFile)+" ") && strings.HasSuffix(rest, " "+e.Path) {
			continue
		}
		out = append(out, l)
	}
	return out
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
