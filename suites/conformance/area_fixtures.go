// Area fixtures: every encrypted fixture reaches CRI-O — pkcs7 (certificate + key),
// multi-recipient (either recipient's key alone decrypts it) and partly-encrypted (only the
// encrypted layer needs the key) each fail without their key and pull with it.

package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// The fixture variants this area pulls (names in the fixtures manifest).
const (
	variantPKCS7           = "pkcs7"
	variantMultiRecipient  = "multi-recipient"
	variantPartlyEncrypted = "partly-encrypted"
)

// keySet is one set of key files that decrypts a variant, as Secret data and as the bytes
// the synchronizer must write (private keys normalised as CRI-O reads them, others as given).
type keySet struct {
	data  map[string][]byte
	files [][]byte // private keys first
	certs [][]byte // certificates (pkcs7): CRI-O needs them beside the key
	norm  []byte   // the set's private key, normalised (for requireNoKey-style checks)
}

// loadVariant reads the lab's fixtures manifest and returns variant name with its key sets.
func (c *Context) loadVariant(t T, name string) (manifest.Variant, []keySet) {
	t.Helper()
	if c.Lab.FixturesManifest == "" {
		t.Fatalf("the lab env file has no FIXTURES_MANIFEST")
	}
	m, err := manifest.Load(c.Lab.FixturesManifest)
	if err != nil {
		t.Fatalf("%v", err)
	}
	v, ok := m.Variant(name)
	if !ok || !v.Encrypted || v.Reference == "" {
		t.Fatalf("the fixtures manifest %s has no encrypted variant %s (rebuild the fixtures: the lab's bring-up pushes them)", c.Lab.FixturesManifest, name)
	}
	var sets []keySet
	for _, paths := range v.KeySets {
		ks := keySet{data: map[string][]byte{}}
		for _, p := range paths {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("failed to read key file of fixture %s: %v", name, err)
			}
			ks.data[filepath.Base(p)] = raw
			if norm, err := crikeys.Normalize(raw); err == nil {
				ks.files = append(ks.files, norm)
				ks.norm = norm
			} else {
				ks.certs = append(ks.certs, raw) // a certificate: written as it is
			}
		}
		if ks.norm == nil {
			t.Fatalf("fixture %s: key set %v holds no private key CRI-O accepts", name, paths)
		}
		sets = append(sets, ks)
	}
	if len(sets) == 0 {
		t.Fatalf("fixture %s: the manifest lists no key set", name)
	}
	return v, sets
}

// syncKeySet creates a key Secret holding the set's files and waits for every file on every
// node.
func (c *Context) syncKeySet(ctx context.Context, t T, s *scope, name string, ks keySet) {
	t.Helper()
	sec := s.secrets.MustCreate(ctx, t, secrets.Key(c.Namespace, c.nameFor(name), c.RunID, ks.data))
	for _, f := range ks.files {
		if _, err := c.waitFile(ctx, f); err != nil {
			t.Fatalf("Secret %s/%s: %v", sec.Namespace, sec.Name, err)
		}
	}
	for _, f := range ks.certs {
		if _, err := c.waitFile(ctx, f); err != nil {
			t.Fatalf("Secret %s/%s: the private key was written but not the certificate beside it; a pkcs7 image needs both in the keys tree (CRI-O reads x509 certificates there): %v",
				sec.Namespace, sec.Name, err)
		}
	}
}

// noneHeld fails when a node already holds the private key of any set (left by another run).
func (c *Context) noneHeld(ctx context.Context, t T, variant string, sets []keySet) {
	t.Helper()
	for _, ks := range sets {
		c.requireNoKey(ctx, t, Image{Name: variant, Key: ks.norm})
	}
}

// featureFixture is the common shape: without a key the variant does not pull; with each of
// the n key sets pick chooses (one at a time, the previous Secret deleted) it pulls.
func featureFixture(variant, why string, n int, pick func(t T, sets []keySet) []keySet) Feature {
	var s *scope
	var v manifest.Variant
	var use []keySet
	f := Feature{
		Name: fmt.Sprintf("fixture %s (%s) fails without its key and pulls with it", variant, why), Area: AreaFixtures,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			var sets []keySet
			v, sets = c.loadVariant(t, variant)
			c.noneHeld(ctx, t, variant, sets)
			use = pick(t, sets)
		},
		Assess: []Step{
			{Name: "without its key the image does not pull", Fn: func(ctx context.Context, t T, c *Context) {
				c.pullFailsEverywhere(ctx, t, v.Reference)
			}},
		},
	}
	for i := range n {
		name := "with its key the image pulls"
		if n > 1 {
			name = fmt.Sprintf("with key set %d of %d alone the image pulls", i+1, n)
		}
		f.Assess = append(f.Assess, Step{Name: name, Fn: func(ctx context.Context, t T, c *Context) {
			if i >= len(use) {
				t.Fatalf("fixture %s: %d key sets chosen, want %d", variant, len(use), n)
			}
			secName := fmt.Sprintf("fx-%s-%d", variant, i+1)
			c.syncKeySet(ctx, t, s, secName, use[i])
			c.pullEverywhere(ctx, t, v.Reference)
			if i+1 < len(use) { // the next set alone
				if err := s.secrets.Delete(ctx, c.Namespace, c.nameFor(secName)); err != nil {
					t.Fatalf("%v", err)
				}
				if err := c.waitNoFile(ctx, use[i].norm); err != nil {
					t.Fatalf("%v", err)
				}
			}
		}})
	}
	return f
}

// firstSet uses the manifest's first key set (KeyFiles).
func firstSet(_ T, sets []keySet) []keySet { return sets[:1] }

// featureFixturePKCS7: the certificate and its private key, in one Secret.
func featureFixturePKCS7() Feature {
	return featureFixture(variantPKCS7, "certificate + key", 1, firstSet)
}

// featureFixtureMultiRecipient: two key sets for different recipients, each alone.
func featureFixtureMultiRecipient() Feature {
	return featureFixture(variantMultiRecipient, "either recipient's key alone", 2, func(t T, sets []keySet) []keySet {
		for _, ks := range sets[1:] {
			if !bytes.Equal(ks.norm, sets[0].norm) {
				return []keySet{sets[0], ks}
			}
		}
		t.Fatalf("fixture %s: the manifest lists no second recipient's key", variantMultiRecipient)
		return nil
	})
}

// featureFixturePartlyEncrypted: one encrypted layer, one plain; the key decrypts it.
func featureFixturePartlyEncrypted() Feature {
	return featureFixture(variantPartlyEncrypted, "only the encrypted layer needs the key", 1, firstSet)
}
