// Area plain, continued: a Secret with two keys, one of them in the SEC1 form CRI-O rejects.

package conformance

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/keysync-dev/keysync/suites/internal/keytree"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// Data keys of the two-key Secret, in sorted order: the synchronizer must write both.
const (
	multiFirstKey  = "first.pem"
	multiSecondKey = "second-sec1.pem"
)

// 2b. Every key of a two-key Secret lands; the second is given as SEC1 EC PEM ("EC PRIVATE
// KEY"), which CRI-O rejects as is (crio-keys), so it must land normalised to PKCS#8.
func featureMultiKey() Feature {
	return Feature{
		Name: "every key of a multi-key Secret lands, normalised", Area: AreaPlain,
		Setup: func(ctx context.Context, t T, c *Context) {
			s := newScope(ctx, t, c)
			c.requireNoKey(ctx, t, c.Fixtures.A)
			c.requireNoKey(ctx, t, c.Fixtures.B)
			second, err := sec1PEM(c.Fixtures.B.Key)
			if err != nil {
				t.Fatalf("fixture %s: %v", c.Fixtures.B.Name, err)
			}
			s.secrets.MustCreate(ctx, t, secrets.Key(c.Namespace, c.nameFor("multi"), c.RunID,
				map[string][]byte{multiFirstKey: c.Fixtures.A.Key, multiSecondKey: second}))
		},
		Assess: []Step{
			{Name: "both keys appear on every node, the SEC1 one as PKCS#8", Fn: func(ctx context.Context, t T, c *Context) {
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.A.Key)); err != nil {
					t.Errorf("data key %s (first of two): %v", multiFirstKey, err)
				}
				if _, err := c.waitFile(ctx, mustNormalize(t, c.Fixtures.B.Key)); err != nil {
					t.Errorf("data key %s, the second of two, given as SEC1 EC PEM, never landed as PKCS#8%s: %v",
						multiSecondKey, orNone(c.treeProblems(ctx, t)), err)
				}
			}},
			{Name: "the images of both keys pull", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullEverywhere(ctx, t, c.Fixtures.A.Ref)
				c.pullEverywhere(ctx, t, c.Fixtures.B.Ref)
			}},
		},
	}
}

// sec1PEM returns an EC private key as SEC1 PEM; other keys are returned as they are.
func sec1PEM(key []byte) ([]byte, error) {
	block, _ := pem.Decode(key)
	if block == nil {
		return nil, fmt.Errorf("key is not PEM")
	}
	if block.Type == "EC PRIVATE KEY" {
		return key, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return key, nil //nolint:nilerr // not PKCS#8: used as is
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return key, nil
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal SEC1: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// orNone is p, or "; keys tree: no problem" when p is empty.
func orNone(p string) string {
	if p == "" {
		return " (keys tree: no file of it, no problem)"
	}
	return p
}

// treeProblems is " (keys tree: ...)" listing the audit's problems on every node, or "".
func (c *Context) treeProblems(ctx context.Context, t T) string {
	var out []string
	for _, n := range c.nodes(ctx, t) {
		problems, err := keytree.Audit(ctx, c.Driver, n, c.Lab.SyncSubdir)
		if err != nil {
			continue
		}
		for _, p := range problems {
			out = append(out, fmt.Sprintf("node %s: %s: %s", n, p.Path, p.Reason))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (keys tree: " + strings.Join(out, "; ") + ")"
}
