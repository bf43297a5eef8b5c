package leakscan

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scanner finds the key in every form it could leak in, in any file under the scanned
// roots, and names the file; it finds nothing in the run's usual output nor in another key of
// the same kind (the run's own keys).
func TestScanFindsTheKey(t *testing.T) {
	key, n := newKey(t)
	block, _ := pem.Decode(key)
	der := block.Bytes
	mid := func(b []byte) []byte { return b[len(b)/2 : len(b)/2+ChunkLen] }
	secretJSON, _ := json.Marshal(map[string]any{"data": map[string][]byte{"key.pem": key}})
	clean := map[string][]byte{
		"junit.xml":         []byte(`<testsuite><testcase name="plain"><system-out>audit: file 0600 1704 ok foreign-1.pem</system-out></testcase></testsuite>`),
		"report.html":       []byte("<html>sha256 " + strings.Repeat("ab", 32) + "</html>"),
		"zeros.bin":         make([]byte, 4096),
		"sub/dir/empty.log": nil,
	}
	// Keys the run made, of the same kind and size (the same structure, often the same
	// lengths), in every form: they may appear anywhere and must never match.
	for i := range 12 {
		own, err := NewRSAKey(2048)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(own)
		p := fmt.Sprintf("own/%d", i)
		clean[p+".pem"] = own
		clean[p+".der"] = b.Bytes
		clean[p+".hex"] = []byte(hex.EncodeToString(b.Bytes) + strings.ToUpper(hex.EncodeToString(b.Bytes)))
		clean[p+"-secret.json"] = mustJSON(t, map[string]any{"data": map[string][]byte{"key.pem": own}})
		for shift := 1; shift < 3; shift++ {
			clean[fmt.Sprintf("%s-%d.b64", p, shift)] = []byte(base64.URLEncoding.EncodeToString(append(make([]byte, shift), own...)))
		}
	}
	tests := []struct {
		name, file string
		content    []byte
		wantForm   string // the form reported ("" any)
	}{
		{"the PEM in a log line", "logs/run.log", append([]byte("2026 INFO read key:\n"), key...), "PEM base64"},
		{"16 bytes of the PEM body only", "junit-part.xml", append([]byte("<system-out>"), mid([]byte(base64.StdEncoding.EncodeToString(der)))...), "PEM base64"},
		{"raw DER in a binary file", "diag/tree.bin", append([]byte{0, 1, 2}, der...), "raw DER"},
		{"16 bytes of DER", "tmp/x", mid(der), "raw DER"},
		{"hex of the DER", "report.html", []byte("<pre>" + hex.EncodeToString(der) + "</pre>"), "hex"},
		{"hex, upper case", "out.txt", []byte(strings.ToUpper(hex.EncodeToString(der))), "hex (upper)"},
		{"base64 of the PEM (a Secret's data)", "secret.json", secretJSON, ""},
		{"base64url of the PEM", "url.txt", []byte(base64.URLEncoding.EncodeToString(key)), ""},
		{"base64 of the PEM behind one byte", "shift1.txt", []byte(base64.StdEncoding.EncodeToString(append([]byte("x"), key...))), "base64 of the PEM (+1)"},
		{"base64 of the PEM behind two bytes", "shift2.txt", []byte(base64.StdEncoding.EncodeToString(append([]byte("xy"), key...))), "base64 of the PEM (+2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, b := range clean {
				write(t, filepath.Join(root, name), b)
			}
			if found, files, err := n.Scan([]string{root}); err != nil || len(found) != 0 || files != len(clean) {
				t.Fatalf("clean tree: found %v in %d files, %v; want nothing in %d", found, files, err, len(clean))
			}
			write(t, filepath.Join(root, tt.file), tt.content)
			found, _, err := n.Scan([]string{root})
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != 1 || found[0].Path != filepath.Join(root, tt.file) {
				t.Fatalf("found %v; want exactly %s", found, tt.file)
			}
			if tt.wantForm != "" && found[0].Form != tt.wantForm {
				t.Errorf("form %q, want %q", found[0].Form, tt.wantForm)
			}
			if strings.Contains(found[0].String(), string(mid([]byte(base64.StdEncoding.EncodeToString(der))))) {
				t.Error("the finding quotes key bytes")
			}
			// The key file itself, or its directory, is skipped when named.
			if found, _, _ := n.Scan([]string{root}, filepath.Join(root, tt.file)); len(found) != 0 {
				t.Errorf("skipped file still reported: %v", found)
			}
			if found, _, _ := n.Scan([]string{root}, filepath.Dir(filepath.Join(root, tt.file))); len(found) != 0 {
				t.Errorf("file in a skipped directory still reported: %v", found)
			}
		})
	}
}

// A root that does not exist is an error (a scan of nothing must not pass as clean).
func TestScanMissingRoot(t *testing.T) {
	_, n := newKey(t)
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	if _, files, err := n.Scan([]string{missing}); err == nil || files != 0 {
		t.Errorf("Scan(%s) = %d files, %v; want an error", missing, files, err)
	}
}

func TestNewNeedlesRejectsNonKeys(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("not pem")},
		{"no key material (only short INTEGERs)", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03}})},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage that is not DER at all")})},
	}
	for _, tt := range tests {
		if _, err := NewNeedles(tt.key); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// newKey makes a fresh RSA-2048 key and its needles.
func newKey(t *testing.T) ([]byte, *Needles) {
	t.Helper()
	key, err := NewRSAKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNeedles(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, n
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
