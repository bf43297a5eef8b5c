package conformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func ecPEM(t *testing.T, sec1 bool) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if sec1 {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestSelectFixtures(t *testing.T) {
	t.Parallel()
	keyA, keyB := ecPEM(t, false), ecPEM(t, true)
	pub, err := publicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"/k/a.pem": keyA, "/k/a-copy.pem": keyA, "/k/b.pem": keyB, "/k/pub.pem": pub}
	read := func(p string) ([]byte, error) {
		if b, ok := files[p]; ok {
			return b, nil
		}
		return nil, errors.New("no such file")
	}
	manifest := `{"schemaVersion":1,"variants":[
	  {"name":"multi","reference":"r/multi:1","encrypted":true,"keyFiles":["/k/a.pem","/k/b.pem"]},
	  {"name":"cert-only","reference":"r/cert:1","encrypted":true,"keyFiles":["/k/pub.pem"]},
	  {"name":"jwe-a","reference":"r/a:1","encrypted":true,"keyFiles":["/k/a.pem"],"marker":"hello a","plainTwin":"r/a-plain:1"},
	  {"name":"jwe-a2","reference":"r/a2:1","encrypted":true,"keyFiles":["/k/a-copy.pem"]},
	  {"name":"jwe-b","reference":"r/b:1","encrypted":true,"keyFiles":["/k/b.pem"],"marker":"hello b"},
	  {"name":"other-plain","reference":"r/other:1","encrypted":false}
	],"keys":[]}`
	vs, err := ParseManifest([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	f, err := SelectFixtures(vs, read)
	if err != nil {
		t.Fatal(err)
	}
	if f.A.Name != "jwe-a" || f.B.Name != "jwe-b" || f.Plain != "r/a-plain:1" || f.A.Marker != "hello a" {
		t.Fatalf("selected A=%s B=%s plain=%s", f.A.Name, f.B.Name, f.Plain)
	}
	if string(f.B.Key) != string(keyB) {
		t.Fatal("B's key bytes are not the key file's")
	}

	tests := []struct {
		name, manifest, wantErr string
	}{
		{"one key only", `[{"name":"a","reference":"r/a","encrypted":true,"keyFiles":["/k/a.pem"]},{"name":"p","reference":"r/p"}]`, "need two encrypted variants"},
		{"no plain", `[{"name":"a","reference":"r/a","encrypted":true,"keyFiles":["/k/a.pem"]},{"name":"b","reference":"r/b","encrypted":true,"keyFiles":["/k/b.pem"]}]`, "unencrypted variant"},
		{"unreadable key", `[{"name":"a","reference":"r/a","encrypted":true,"keyFiles":["/k/missing.pem"]}]`, "failed to read key of fixture a"},
		{"not json", `{`, "failed to decode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vs, err := ParseManifest([]byte(tc.manifest))
			if err == nil {
				_, err = SelectFixtures(vs, read)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}
