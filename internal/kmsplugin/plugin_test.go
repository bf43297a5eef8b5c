package kmsplugin

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/keysync-dev/keysync/internal/syncbuf"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// plugin is a running plug-in against a mockkp.
type plugin struct {
	kp     *mockkptest.Env
	client kmsapi.KeyManagementServiceClient
	health string
	logs   *syncbuf.Buffer
	socket string
}

// startPlugin runs the plug-in (Run, through the runbook's config file) against mockkp and
// dials its socket with the KMS v2 gRPC client, as kube-apiserver does.
func startPlugin(t testing.TB, extraYAML map[string]string, args ...string) *plugin {
	t.Helper()
	env := mockkptest.Start(t)
	// Short: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "kms.sock")
	server := map[string]string{"UNIX_SOCKET_PATH": socket, "TOKEN_URL": env.TokenURL, "API_KEY": env.APIKey,
		"HEALTHZ_PATH": "/healthz", "HEALTHZ_PORT": "0", "MAX_RETRIES": "0", "CACHE_TIMEOUT_IN_HOURS": "1"}
	logger := map[string]string{"LOG_LEVEL": "debug", "LOG_ALL_VALUES": "false"}
	for k, v := range extraYAML {
		if _, ok := logger[k]; ok {
			logger[k] = v
		} else {
			server[k] = v
		}
	}
	var y strings.Builder
	y.WriteString("SERVER_CONFIG:\n")
	for k, v := range server {
		y.WriteString("  " + k + ": \"" + v + "\"\n")
	}
	y.WriteString("KP_CONFIG:\n  CRK_ID: \"" + env.RootKeyID + "\"\n  URL: \"" + env.URL + "\"\n  INSTANCE_ID: \"" + env.InstanceID + "\"\n")
	y.WriteString("LOGGER:\n")
	for k, v := range logger {
		y.WriteString("  " + k + ": \"" + v + "\"\n")
	}
	path := writeFile(t, dir, "kmsplugin-config.yaml", y.String(), 0o600)
	c, err := Load(append([]string{"--allow-insecure-kp", "--key-check-interval=0s"}, args...), env2(EnvConfigFile, path))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, logs, Hooks{Listening: func(a string) { listening <- a }}) }()
	p := &plugin{kp: env, logs: logs, socket: socket}
	select {
	case p.health = <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the plug-in did not listen within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Stat(socket); !os.IsNotExist(err) {
			t.Errorf("socket left after stop: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.client = kmsapi.NewKeyManagementServiceClient(conn)
	return p
}

func env2(k, v string) func(string) string {
	return func(key string) string {
		if key == k {
			return v
		}
		return ""
	}
}

func (p *plugin) status(t *testing.T) (*kmsapi.StatusResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return p.client.Status(ctx, &kmsapi.StatusRequest{})
}

func (p *plugin) probe(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.health + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestPluginRoundTripAndRotation: encrypt and decrypt through the gRPC service on its unix
// socket; Status's key_id is <crk>:<version>; after a rotation in Key Protect key_id changes,
// new encryptions carry it and the old ciphertext still decrypts.
func TestPluginRoundTripAndRotation(t *testing.T) {
	p := startPlugin(t, nil)
	ctx := t.Context()
	st, err := p.status(t)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	first := KeyID(p.kp.RootKeyID, p.kp.RootKeyID) // mockkp: the first version has the key's id
	if st.Version != "v2" || st.Healthz != "ok" || st.KeyId != first {
		t.Fatalf("Status = %+v, want v2, ok, key_id %s", st, first)
	}
	deks := [][]byte{bytes.Repeat([]byte{0x42}, 32), {0, 1, 2, 255}}
	var old *kmsapi.EncryptResponse
	for _, dek := range deks {
		enc, err := p.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "uid-1"})
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		if enc.KeyId != first || len(enc.Ciphertext) == 0 || len(enc.Ciphertext) > 1024 || bytes.Contains(enc.Ciphertext, dek) {
			t.Fatalf("Encrypt = key_id %q, %d bytes of ciphertext; want key_id %s and 1..1024 bytes without the DEK", enc.KeyId, len(enc.Ciphertext), first)
		}
		dec, err := p.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "uid-2"})
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(dec.Plaintext, dek) {
			t.Fatalf("Decrypt returned %d bytes, not the DEK", len(dec.Plaintext))
		}
		old = enc
	}

	if err := p.kp.Client(t, nil).Rotate(ctx, p.kp.RootKeyID, ""); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	st, err = p.status(t)
	if err != nil {
		t.Fatalf("Status after rotation: %v", err)
	}
	if st.KeyId == first || !strings.HasPrefix(st.KeyId, p.kp.RootKeyID+":") {
		t.Fatalf("key_id after rotation = %q, want a new version of %s", st.KeyId, p.kp.RootKeyID)
	}
	enc, err := p.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: deks[0], Uid: "uid-3"})
	if err != nil || enc.KeyId != st.KeyId {
		t.Fatalf("Encrypt after rotation = %v, key_id %q; want %q", err, enc.GetKeyId(), st.KeyId)
	}
	dec, err := p.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: old.Ciphertext, KeyId: old.KeyId, Uid: "uid-4"})
	if err != nil || !bytes.Equal(dec.GetPlaintext(), deks[1]) {
		t.Fatalf("Decrypt of a DEK wrapped before the rotation: %v", err)
	}

	for _, tc := range []struct{ name, keyID string }{{"malformed key_id", "no-colon"}, {"another root key", "aaaaaaaa-0000-4000-8000-000000000000:v"}} {
		if _, err := p.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: old.Ciphertext, KeyId: tc.keyID}); err == nil {
			t.Errorf("Decrypt with %s succeeded", tc.name)
		}
	}
	if _, err := p.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: []byte("tampered"), KeyId: old.KeyId}); err == nil {
		t.Error("Decrypt of a tampered ciphertext succeeded")
	}
}

// TestPluginReadiness: liveness stays up, readiness and Status fail while Key Protect drops
// every connection, and both recover once it answers again.
func TestPluginReadiness(t *testing.T) {
	p := startPlugin(t, map[string]string{"HEALTHZ_PATH": "/live"})
	if got := p.probe(t, "/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz = %d before the outage", got)
	}
	if err := p.kp.Server.AddFault(mockkp.Fault{Op: mockkp.AnyOp, Kind: mockkp.FaultDrop, Count: 1000}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want int
	}{{"/readyz", http.StatusServiceUnavailable}, {"/live", http.StatusOK}, {"/livez", http.StatusOK}, {"/healthz", http.StatusNotFound}} {
		if got := p.probe(t, tc.path); got != tc.want {
			t.Errorf("%s during the outage = %d, want %d", tc.path, got, tc.want)
		}
	}
	if _, err := p.status(t); err == nil {
		t.Error("Status succeeded while Key Protect drops every connection")
	}
	p.kp.Server.ClearFaults()
	if got := p.probe(t, "/readyz"); got != http.StatusOK {
		t.Errorf("/readyz = %d after the outage", got)
	}
	if st, err := p.status(t); err != nil || st.Healthz != "ok" {
		t.Errorf("Status after the outage = %v, %v", st, err)
	}
	if !strings.Contains(p.logs.String(), "Key Protect unusable") || !strings.Contains(p.logs.String(), "Key Protect usable") {
		t.Errorf("logs do not show the outage and the recovery:\n%s", p.logs.String())
	}
}

// TestPluginMaxRetries: one Key Protect call makes 1+MAX_RETRIES attempts on 503s and says so.
func TestPluginMaxRetries(t *testing.T) {
	for _, retries := range []int{0, 1} {
		t.Run("MAX_RETRIES="+string(rune('0'+retries)), func(t *testing.T) {
			p := startPlugin(t, map[string]string{"MAX_RETRIES": string(rune('0' + retries))})
			if _, err := p.status(t); err != nil { // the token is cached from here on
				t.Fatal(err)
			}
			p.kp.Server.ResetCounters()
			if err := p.kp.Server.AddFault(mockkp.Fault{Op: mockkp.OpWrap, Kind: mockkp.FaultStatus, Status: 503, Count: 10}); err != nil {
				t.Fatal(err)
			}
			_, err := p.client.Encrypt(t.Context(), &kmsapi.EncryptRequest{Plaintext: []byte("dek"), Uid: "u"})
			if err == nil || !strings.Contains(err.Error(), "MAX_RETRIES") {
				t.Fatalf("Encrypt = %v, want an error naming MAX_RETRIES", err)
			}
			if n := p.kp.Server.Requests(mockkp.OpWrap); n != int64(1+retries) {
				t.Errorf("%d wrap requests, want %d", n, 1+retries)
			}
		})
	}
}

// TestPluginNeverLogsSecrets: at LOG_LEVEL debug with LOG_ALL_VALUES true, neither the API
// key, nor a DEK, nor a ciphertext, nor a token reaches the log; a warning says so.
func TestPluginNeverLogsSecrets(t *testing.T) {
	p := startPlugin(t, map[string]string{"LOG_ALL_VALUES": "true", "LOG_LEVEL": "debug"})
	dek := []byte("dek-plaintext-0123456789abcdef!!")
	enc, err := p.client.Encrypt(t.Context(), &kmsapi.EncryptRequest{Plaintext: dek, Uid: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Decrypt(t.Context(), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "u2"}); err != nil {
		t.Fatal(err)
	}
	_, _ = p.client.Decrypt(t.Context(), &kmsapi.DecryptRequest{Ciphertext: []byte("x" + string(enc.Ciphertext)), KeyId: enc.KeyId, Uid: "u3"})
	if err := p.kp.Server.AddFault(mockkp.Fault{Op: mockkp.AnyOp, Kind: mockkp.FaultStatus, Status: 500, Count: 5}); err != nil {
		t.Fatal(err)
	}
	_, _ = p.status(t)
	logs := p.logs.String()
	if !strings.Contains(logs, "LOG_ALL_VALUES is true") || !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatalf("logs lack the LOG_ALL_VALUES warning or debug lines:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"API key": p.kp.APIKey, "DEK": string(dek), "DEK (base64)": base64.StdEncoding.EncodeToString(dek),
		"ciphertext": string(enc.Ciphertext), "bearer token": "Bearer ",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s:\n%s", name, logs)
		}
	}
}

// TestRunRefusesBusySocket: a socket another server answers on is not taken over; a stale
// one is replaced.
func TestRunRefusesBusySocket(t *testing.T) {
	p := startPlugin(t, nil)
	c := Config{SocketPath: p.socket, TokenURL: p.kp.TokenURL, APIKey: p.kp.APIKey, HealthzPath: "/healthz", CRKID: p.kp.RootKeyID,
		KPURL: p.kp.URL, InstanceID: p.kp.InstanceID, LogLevel: "info", AllowInsecureKP: true}
	err := Run(t.Context(), c, io.Discard, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "another server answers there") {
		t.Fatalf("Run on a busy socket = %v", err)
	}
	stale := filepath.Join(filepath.Dir(p.socket), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := listenUnixAndClose(stale); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
}

func listenUnixAndClose(path string) (struct{}, error) {
	l, err := listenUnix(path)
	if err != nil {
		return struct{}{}, err
	}
	st, err := os.Stat(path)
	l.Close()
	if err == nil && st.Mode().Perm() != 0o600 {
		return struct{}{}, os.ErrPermission
	}
	return struct{}{}, err
}
