package secretkeys_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/secretkeys"
)

func TestKeyFiles(t *testing.T) {
	good, rsa, sec1 := testkeys.PKCS8(t), testkeys.RSA(t), testkeys.SEC1(t)
	tests := []struct {
		name       string
		data       map[string][]byte
		wantFiles  []string // data keys that become files
		wantReason map[string]string
	}{
		{"pkcs8", map[string][]byte{"a.pem": good}, []string{"a.pem"}, nil},
		{"pkcs1", map[string][]byte{"rsa": rsa}, []string{"rsa"}, nil},
		{"sec1 normalised", map[string][]byte{"ec": sec1}, []string{"ec"}, nil},
		{"no data", map[string][]byte{}, nil, map[string]string{"": secretkeys.ReasonNoData}},
		{"empty", map[string][]byte{"e": {}}, nil, map[string]string{"e": secretkeys.ReasonEmpty}},
		{"public", map[string][]byte{"p": testkeys.Public(t)}, nil, map[string]string{"p": secretkeys.ReasonUnknownType}},
		{"encrypted", map[string][]byte{"x": testkeys.Encrypted(t)}, nil, map[string]string{"x": secretkeys.ReasonPasswordNeeded}},
		{"base64 of pem", map[string][]byte{"b": testkeys.Base64(t)}, nil, map[string]string{"b": secretkeys.ReasonUnknownType}},
		{"leading spaces", map[string][]byte{"l": testkeys.LeadingSpaces(t)}, nil, map[string]string{"l": secretkeys.ReasonUnknownType}},
		{"huge", map[string][]byte{"h": bytes.Repeat([]byte("A"), secretkeys.MaxKeySize+1)}, nil, map[string]string{"h": secretkeys.ReasonTooLarge}},
		{"traversal", map[string][]byte{"../x": good}, nil, map[string]string{"../x": secretkeys.ReasonInvalidName}},
		{"mixed", map[string][]byte{"ok": good, "bad": []byte("nope")}, []string{"ok"}, map[string]string{"bad": secretkeys.ReasonUnknownType}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files, rejected := secretkeys.KeyFiles("ns", "s", tc.data)
			var got []string
			for _, f := range files {
				got = append(got, f.DataKey)
				if f.Name != keyfile.Name("ns", "s", f.DataKey) {
					t.Errorf("file name %q not derived from ns/s/%s", f.Name, f.DataKey)
				}
				if k, err := crikeys.Classify(f.Data); err != nil || k != crikeys.PrivateKey {
					t.Errorf("file %s does not classify as a private key: %v %v", f.DataKey, k, err)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.wantFiles, ",") {
				t.Errorf("files %v, want %v", got, tc.wantFiles)
			}
			if len(rejected) != len(tc.wantReason) {
				t.Fatalf("rejections %v, want %v", rejected, tc.wantReason)
			}
			for _, r := range rejected {
				if tc.wantReason[r.DataKey] != r.Reason {
					t.Errorf("data[%q] reason %q, want %q", r.DataKey, r.Reason, tc.wantReason[r.DataKey])
				}
				for _, v := range tc.data {
					if len(v) > 40 && strings.Contains(r.String(), string(v[len(v)/2:len(v)/2+20])) {
						t.Errorf("rejection message leaks key material: %s", r)
					}
				}
			}
		})
	}
	files, _ := secretkeys.KeyFiles("ns", "s", map[string][]byte{"ec": sec1})
	if !bytes.Contains(files[0].Data, []byte("BEGIN PRIVATE KEY")) {
		t.Errorf("SEC1 PEM not converted to PKCS#8")
	}
}

func TestParseKPRef(t *testing.T) {
	ct := base64.StdEncoding.EncodeToString([]byte(`{"ciphertext":"x"}`))
	tests := []struct {
		name   string
		data   map[string][]byte
		reason string
	}{
		{"ok", map[string][]byte{"rootkeyid": []byte("rk"), "ciphertext": []byte(ct)}, ""},
		{"ok with newline", map[string][]byte{"rootkeyid": []byte("rk\n"), "ciphertext": []byte(ct + "\n")}, ""},
		{"missing rootkeyid", map[string][]byte{"ciphertext": []byte(ct)}, secretkeys.ReasonMissingField},
		{"missing ciphertext", map[string][]byte{"rootkeyid": []byte("rk")}, secretkeys.ReasonMissingField},
		{"bad base64", map[string][]byte{"rootkeyid": []byte("rk"), "ciphertext": []byte("%%%")}, secretkeys.ReasonBadCiphertext},
		{"path in rootkeyid", map[string][]byte{"rootkeyid": []byte("../x"), "ciphertext": []byte(ct)}, secretkeys.ReasonMissingField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref, rej, ok := secretkeys.ParseKPRef("uid", tc.data)
			if ok != (tc.reason == "") || rej.Reason != tc.reason {
				t.Fatalf("ParseKPRef = %v %v, want reason %q", ok, rej, tc.reason)
			}
			if ok && (ref.RootKeyID != "rk" || ref.Ciphertext != ct || ref.Version == "") {
				t.Errorf("ref = %+v", ref)
			}
		})
	}
	a, _, _ := secretkeys.ParseKPRef("uid1", map[string][]byte{"rootkeyid": []byte("rk"), "ciphertext": []byte(ct)})
	b, _, _ := secretkeys.ParseKPRef("uid2", map[string][]byte{"rootkeyid": []byte("rk"), "ciphertext": []byte(ct)})
	c, _, _ := secretkeys.ParseKPRef("uid1", map[string][]byte{"rootkeyid": []byte("rk"), "ciphertext": []byte(ct)})
	if a.Version == b.Version || a.Version != c.Version {
		t.Errorf("versions: same content other UID %v, same both %v", a.Version == b.Version, a.Version == c.Version)
	}
}

// FuzzKeyFiles: whatever a Secret holds, KeyFiles never panics, every file it returns is a
// private key CRI-O accepts under a safe generated name, and every entry is accounted for.
func FuzzKeyFiles(f *testing.F) {
	f.Add("ns", "s", "key.pem", testkeys.PKCS8(f))
	f.Add("ns", "s", "ec", testkeys.SEC1(f))
	f.Add("ns", "s", "rsa", testkeys.RSA(f))
	f.Add("ns", "s", "pub", testkeys.Public(f))
	f.Add("ns", "s", "enc", testkeys.Encrypted(f))
	f.Add("ns", "s", "b64", testkeys.Base64(f))
	f.Add("ns", "s", "crlf", testkeys.CRLF(f))
	f.Add("ns", "s", "../../x", []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add("", "", "", []byte{})
	f.Add("a/b", "c\x00d", "..", []byte("{\"kty\":\"EC\"}"))
	f.Fuzz(func(t *testing.T, ns, secret, key string, value []byte) {
		files, rejected := secretkeys.KeyFiles(ns, secret, map[string][]byte{key: value})
		if len(files)+len(rejected) != 1 {
			t.Fatalf("%d files + %d rejections for one entry", len(files), len(rejected))
		}
		for _, file := range files {
			if !keyfile.IsName(file.Name) || strings.Contains(file.Name, "/") || len(file.Name) > 255 {
				t.Fatalf("unsafe file name %q", file.Name)
			}
			if k, err := crikeys.Classify(file.Data); err != nil || k != crikeys.PrivateKey {
				t.Fatalf("written data is not a private key CRI-O accepts: %v %v", k, err)
			}
			if len(file.Data) > 2*secretkeys.MaxKeySize {
				t.Fatalf("file of %d bytes", len(file.Data))
			}
		}
		for _, r := range rejected {
			if r.Reason == "" || r.Err == nil {
				t.Fatalf("rejection without reason: %+v", r)
			}
			if len(value) >= 32 && strings.Contains(r.String(), string(value)) {
				t.Fatalf("rejection quotes the value")
			}
		}
	})
}
