package etcdraw

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// field appends a length-delimited protobuf field.
func field(b []byte, num int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(num)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func kmsValue(provider string, data []byte, keyID string, dek []byte) []byte {
	b := []byte(KMSv2Prefix + provider + ":")
	if data != nil {
		b = field(b, fieldEncryptedData, data)
	}
	if keyID != "" {
		b = field(b, fieldKeyID, []byte(keyID))
	}
	if dek != nil {
		b = field(b, fieldEncryptedDEKSource, dek)
	}
	return binary.AppendUvarint(append(b, 5<<3), 1) // encryptedDEKSourceType = 1 (varint)
}

func TestCheckEncrypted(t *testing.T) {
	key := testKey(t)
	ct := make([]byte, 300)
	if _, err := rand.Read(ct); err != nil {
		t.Fatal(err)
	}
	// What kube-apiserver stores through the identity provider: protobuf with the data raw.
	identity := append([]byte("k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12"), key...)
	pemLine := []byte(strings.Split(string(key), "\n")[2])
	b64 := []byte(base64.StdEncoding.EncodeToString(key))
	for _, tc := range []struct {
		name, wantErr string
		raw           []byte
		wantKeyID     string
	}{
		{name: "KMS v2 envelope", raw: kmsValue("keysync-kp", ct, "crk:v2", []byte("wrapped-dek")), wantKeyID: "crk:v2"},
		{name: "identity (plaintext protobuf)", raw: identity, wantErr: "does not start with"},
		{name: "JSON in the clear", raw: []byte(`{"kind":"Secret","data":{"key.pem":"` + string(b64) + `"}}`), wantErr: "does not start with"},
		{name: "KMS v1 prefix", raw: append([]byte("k8s:enc:kms:v1:keysync-kp:"), ct...), wantErr: "does not start with"},
		{name: "aescbc", raw: append([]byte("k8s:enc:aescbc:v1:key1:"), ct...), wantErr: "does not start with"},
		{name: "envelope holding a PEM line", raw: kmsValue("p", append(ct, pemLine...), "crk:v1", []byte("d")), wantErr: "secret #1 verbatim"},
		{name: "envelope holding the key in base64", raw: kmsValue("p", append(ct, b64[40:80]...), "crk:v1", []byte("d")), wantErr: "secret #1 verbatim"},
		{name: "no key id", raw: kmsValue("p", ct, "", []byte("d")), wantErr: "no key id"},
		{name: "no DEK", raw: kmsValue("p", ct, "crk:v1", nil), wantErr: "no encrypted DEK"},
		{name: "no data", raw: kmsValue("p", nil, "crk:v1", []byte("d")), wantErr: "no encrypted data"},
		{name: "no provider", raw: []byte(KMSv2Prefix + "abc"), wantErr: "no provider name"},
		{name: "truncated protobuf", raw: kmsValue("p", ct, "crk:v1", []byte("d"))[:40], wantErr: "bad length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := CheckEncrypted(tc.raw, key)
			if tc.wantErr == "" {
				if err != nil || env.KeyID != tc.wantKeyID || env.Provider != "keysync-kp" || env.DataLen != len(ct) {
					t.Fatalf("CheckEncrypted = %+v, %v; want key id %q", env, err, tc.wantKeyID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckEncrypted error = %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), string(pemLine)) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

// gateway is a fake of etcd's /v3/kv/range.
func gateway(t *testing.T, values map[string][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Key string }
		if r.Method != http.MethodPost || r.URL.Path != "/v3/kv/range" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		k, _ := base64.StdEncoding.DecodeString(req.Key)
		v, ok := values[string(k)]
		if !ok {
			_, _ = w.Write([]byte(`{"header":{}}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"kvs": []map[string]string{{"key": req.Key, "value": base64.StdEncoding.EncodeToString(v)}}})
	})
}

func TestGet(t *testing.T) {
	ctx := context.Background()
	key := SecretKey("ns", "s")
	values := map[string][]byte{key: []byte("raw\x00value")}
	plain := httptest.NewServer(gateway(t, values))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(gateway(t, values))
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	for _, tc := range []struct {
		name    string
		cfg     Config
		key     string
		wantErr string
	}{
		{name: "plain http", cfg: Config{Endpoints: []string{plain.URL}}, key: key},
		{name: "https with the lab's CA", cfg: Config{Endpoints: []string{tlsSrv.URL}, CAFile: ca}, key: key},
		{name: "first endpoint down", cfg: Config{Endpoints: []string{down.URL, plain.URL + "/"}}, key: key},
		{name: "https without the CA", cfg: Config{Endpoints: []string{tlsSrv.URL}}, key: key, wantErr: "certificate"},
		{name: "missing key", cfg: Config{Endpoints: []string{plain.URL}}, key: "/registry/secrets/ns/none", wantErr: "no value in etcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Get error = %v, want %q", err, tc.wantErr)
				}
				if tc.wantErr == "no value in etcd" && !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get error %v is not ErrNotFound", err)
				}
				return
			}
			if err != nil || string(got) != "raw\x00value" {
				t.Fatalf("Get = %q, %v", got, err)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no endpoint", cfg: Config{}, wantErr: "no etcd endpoint"},
		{name: "unreadable CA", cfg: Config{Endpoints: []string{"https://x"}, CAFile: filepath.Join(t.TempDir(), "none")}, wantErr: "failed to read etcd CA file"},
		{name: "CA without PEM", cfg: Config{Endpoints: []string{"https://x"}, CAFile: "etcdraw.go"}, wantErr: "no PEM certificate"},
		{name: "cert without key", cfg: Config{Endpoints: []string{"https://x"}, CertFile: ca}, wantErr: "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
