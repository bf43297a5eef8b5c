package wrap_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/cli/kp"
	"github.com/keysync-dev/keysync/internal/cli/wrap"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func privateKeyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// run executes keysync with the wrap and kp subcommands.
func run(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	s := &cli.Streams{In: bytes.NewReader(stdin), Out: &out, ErrOut: &errOut,
		Logger: slog.New(slog.NewTextHandler(&errOut, nil))}
	code := cli.Run(context.Background(), s, args, wrap.NewCommand, kp.NewCommand)
	return code, out.String(), errOut.String()
}

func clearEnv(t *testing.T) {
	for _, k := range []string{kp.EnvURL, kp.EnvTokenURL, kp.EnvInstanceID, kp.EnvAPIKey} {
		t.Setenv(k, "")
	}
}

func TestWrapRoundTrip(t *testing.T) {
	clearEnv(t)
	env := mockkptest.Start(t)
	dir := t.TempDir()
	pemData := privateKeyPEM(t)
	keyFile := filepath.Join(dir, "image-key.pem")
	if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	apiKeyFile := filepath.Join(dir, "apikey")
	if err := os.WriteFile(apiKeyFile, []byte(env.APIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.json")
	cfgJSON, _ := json.Marshal(env.Config())
	if err := os.WriteFile(cfgFile, cfgJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--url", env.URL, "--token-url", env.TokenURL, "--instance-id", env.InstanceID}
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		stdin     []byte
		wantName  string
		wantNS    string
		parseJSON bool
	}{
		{"yaml, api key from env", map[string]string{kp.EnvAPIKey: env.APIKey},
			append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", keyFile}, conn...), nil, "image-key", wrap.DefaultNamespace, false},
		{"json, api key file, stdin", nil,
			append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", "-", "--name", "from-stdin", "-n", "other", "-o", "json", "--apikey-file", apiKeyFile}, conn...),
			pemData, "from-stdin", "other", true},
		{"config file only", nil,
			[]string{"wrap", "--root-key-id", env.RootKeyID, "--key", keyFile, "--config", cfgFile}, nil, "image-key", wrap.DefaultNamespace, false},
		{"everything from env", map[string]string{kp.EnvAPIKey: env.APIKey, kp.EnvURL: env.URL, kp.EnvTokenURL: env.TokenURL, kp.EnvInstanceID: env.InstanceID},
			[]string{"wrap", "--root-key-id", env.RootKeyID, "--key", keyFile}, nil, "image-key", wrap.DefaultNamespace, false},
	}
	client := env.Client(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := run(t, tc.stdin, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var sec corev1.Secret
			var err error
			if tc.parseJSON {
				err = json.Unmarshal([]byte(out), &sec)
			} else {
				err = yaml.UnmarshalStrict([]byte(out), &sec)
			}
			if err != nil {
				t.Fatalf("output is not a Secret: %v", err)
			}
			if sec.Kind != "Secret" || sec.APIVersion != "v1" || string(sec.Type) != kpkey.SecretTypeKPKey ||
				sec.Name != tc.wantName || sec.Namespace != tc.wantNS || len(sec.Data) != 2 {
				t.Fatalf("Secret = %s/%s %s/%s type %s with %d entries", sec.APIVersion, sec.Kind, sec.Namespace, sec.Name, sec.Type, len(sec.Data))
			}
			if string(sec.Data[kpkey.RootKeyIDKey]) != env.RootKeyID {
				t.Fatalf("rootkeyid = %q", sec.Data[kpkey.RootKeyIDKey])
			}
			got, err := kpkey.Unwrap(t.Context(), client, string(sec.Data[kpkey.RootKeyIDKey]), string(sec.Data[kpkey.CiphertextKey]))
			if err != nil || !bytes.Equal(got, pemData) {
				t.Fatalf("Unwrap of the Secret's ciphertext: %v (matches %v)", err, bytes.Equal(got, pemData))
			}
			if strings.Contains(errOut, env.APIKey) || strings.Contains(errOut, string(pemData)) {
				t.Fatalf("stderr leaks the API key or the key")
			}
		})
	}
}

func TestWrapErrors(t *testing.T) {
	clearEnv(t)
	env := mockkptest.Start(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.pem", privateKeyPEM(t))
	notKey := write("cert.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	empty := write("empty.pem", nil)
	huge := write("huge.pem", bytes.Repeat([]byte("A"), 7169))
	badCfg := write("bad.json", []byte(`{"apikey": "`+env.APIKey+`"`))
	emptyKey := write("emptykey", []byte("\n"))
	conn := []string{"--url", env.URL, "--token-url", env.TokenURL, "--instance-id", env.InstanceID}
	withKey := map[string]string{kp.EnvAPIKey: env.APIKey}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no root key flag", withKey, append([]string{"wrap", "--key", good}, conn...), `"root-key-id" not set`},
		{"missing file", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", filepath.Join(dir, "none.pem")}, conn...), "failed to open key file"},
		{"not a private key", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", notKey}, conn...), "CRI-O could not use it"},
		{"empty key", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", empty}, conn...), "empty"},
		{"too large", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", huge, "--no-validate"}, conn...), "larger than"},
		{"stdin without name", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", "-"}, conn...), "--name is required"},
		{"bad name", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", good, "--name", "Bad_Name"}, conn...), "DNS-1123"},
		{"no api key", nil, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", good}, conn...), "apikey is missing"},
		{"empty api key file", nil, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", good, "--apikey-file", emptyKey}, conn...), "the file is empty"},
		{"bad config", nil, []string{"wrap", "--root-key-id", env.RootKeyID, "--key", good, "--config", badCfg}, "failed to parse --config"},
		{"wrong api key", map[string]string{kp.EnvAPIKey: "wrong"}, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", good}, conn...), mockkp.IAMCodeAPIKeyNotFound},
		{"unknown root key", withKey, append([]string{"wrap", "--root-key-id", "nope", "--key", good}, conn...), mockkp.CodeKeyNotFound},
		{"bad output", withKey, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", good, "-o", "xml"}, conn...), "invalid --output"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := run(t, nil, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want failure mentioning %q", code, errOut, tc.wantErr)
			}
			if out != "" {
				t.Fatalf("failed command printed %q", out)
			}
			if strings.Contains(errOut, env.APIKey) {
				t.Fatalf("stderr leaks the API key")
			}
		})
	}
	// --no-validate wraps what CRI-O would reject (for negative suites).
	t.Setenv(kp.EnvAPIKey, env.APIKey)
	if code, out, errOut := run(t, nil, append([]string{"wrap", "--root-key-id", env.RootKeyID, "--key", notKey, "--no-validate"}, conn...)...); code != 0 || !strings.Contains(out, "type: kp-key") {
		t.Fatalf("--no-validate: exit %d %s", code, errOut)
	}
}

func TestCreateRootKey(t *testing.T) {
	clearEnv(t)
	env := mockkptest.Start(t)
	t.Setenv(kp.EnvAPIKey, env.APIKey)
	conn := []string{"--url", env.URL, "--token-url", env.TokenURL, "--instance-id", env.InstanceID}
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(keyFile, privateKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		parse  func(string) (string, error)
		alias  string
		failed string
	}{
		{"id output", []string{"--name", "lab-root"}, func(s string) (string, error) { return strings.TrimSpace(s), nil }, "", ""},
		{"json output with alias", []string{"--name", "lab-root-2", "-o", "json", "--alias", "lab-alias", "--description", "d"}, func(s string) (string, error) {
			var v struct{ ID string }
			err := json.Unmarshal([]byte(s), &v)
			return v.ID, err
		}, "lab-alias", ""},
		{"no name", nil, nil, "", `"name" not set`},
		{"short name", []string{"--name", "x"}, nil, "", mockkp.CodeInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, append(append([]string{"kp", "create-root-key"}, tc.args...), conn...)...)
			if tc.failed != "" {
				if code == 0 || !strings.Contains(errOut, tc.failed) {
					t.Fatalf("exit %d %s; want failure with %q", code, errOut, tc.failed)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			id, err := tc.parse(out)
			if err != nil || id == "" {
				t.Fatalf("output %q has no id: %v", out, err)
			}
			md, err := env.Client(t, nil).GetKeyMetadata(t.Context(), id)
			if err != nil || md.Extractable || md.State != mockkp.StateActive {
				t.Fatalf("created key = %+v, %v; want an active root key", md, err)
			}
			ref := id
			if tc.alias != "" {
				ref = tc.alias
			}
			if code, _, errOut := run(t, nil, append([]string{"wrap", "--root-key-id", ref, "--key", keyFile}, conn...)...); code != 0 {
				t.Fatalf("wrap with the new key: %s", errOut)
			}
		})
	}
}
