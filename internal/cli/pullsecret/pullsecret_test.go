package pullsecret_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/cli/pullsecret"
	"github.com/keysync-dev/keysync/internal/kubetest"
)

// Expected bytes, computed outside Go (printf %s ... | base64): see the library's tests.
const (
	envKey = "KEYSYNC_REGISTRY_APIKEY"
	key1   = "dummy-apikey-0123"
	auth1  = "aWFtYXBpa2V5OmR1bW15LWFwaWtleS0wMTIz"
	key2   = "dummy-apikey-4567"
	auth2  = "aWFtYXBpa2V5OmR1bW15LWFwaWtleS00NTY3"

	usB64 = "eyJhdXRocyI6eyJwcml2YXRlLnVzLmljci5pbyI6eyJhdXRoIjoiYVdGdFlYQnBhMlY1T21SMWJXMTVMV0Z3YVd0bGVTMHdNVEl6IiwicGFzc3dvcmQiOiJkdW1teS1hcGlrZXktMDEyMyIsInVzZXJuYW1lIjoiaWFtYXBpa2V5In0sInJlZ2lzdHJ5Lm5nLmJsdWVtaXgubmV0Ijp7ImF1dGgiOiJhV0Z0WVhCcGEyVjVPbVIxYlcxNUxXRndhV3RsZVMwd01USXoiLCJwYXNzd29yZCI6ImR1bW15LWFwaWtleS0wMTIzIiwidXNlcm5hbWUiOiJpYW1hcGlrZXkifSwidXMuaWNyLmlvIjp7ImF1dGgiOiJhV0Z0WVhCcGEyVjVPbVIxYlcxNUxXRndhV3RsZVMwd01USXoiLCJwYXNzd29yZCI6ImR1bW15LWFwaWtleS0wMTIzIiwidXNlcm5hbWUiOiJpYW1hcGlrZXkifX19"
	// labB64 is base64 of the document for alias.lab.test:5000 and registry.lab.test:5000.
	labB64 = "eyJhdXRocyI6eyJhbGlhcy5sYWIudGVzdDo1MDAwIjp7ImF1dGgiOiJhV0Z0WVhCcGEyVjVPbVIxYlcxNUxXRndhV3RsZVMwd01USXoiLCJwYXNzd29yZCI6ImR1bW15LWFwaWtleS0wMTIzIiwidXNlcm5hbWUiOiJpYW1hcGlrZXkifSwicmVnaXN0cnkubGFiLnRlc3Q6NTAwMCI6eyJhdXRoIjoiYVdGdFlYQnBhMlY1T21SMWJXMTVMV0Z3YVd0bGVTMHdNVEl6IiwicGFzc3dvcmQiOiJkdW1teS1hcGlrZXktMDEyMyIsInVzZXJuYW1lIjoiaWFtYXBpa2V5In19fQ=="
)

func labDoc(key, auth string) string {
	e := `{"auth":"` + auth + `","password":"` + key + `","username":"iamapikey"}`
	return `{"auths":{"alias.lab.test:5000":` + e + `,"registry.lab.test:5000":` + e + `}}`
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	s := &cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut,
		Logger: slog.New(slog.NewTextHandler(&errOut, nil))}
	code := cli.Run(context.Background(), s, args, pullsecret.NewCommand)
	return code, out.String(), errOut.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// noSecretsOnStderr fails when stderr carries an API key or an auth value.
func noSecretsOnStderr(t *testing.T, errOut string) {
	t.Helper()
	for _, s := range []string{key1, auth1, key2, auth2} {
		if strings.Contains(errOut, s) {
			t.Fatalf("stderr carries a key or an auth value:\n%s", errOut)
		}
	}
}

func TestPrint(t *testing.T) {
	dir := t.TempDir()
	keyFile := write(t, dir, "apikey", key1+"\n")
	regions := write(t, dir, "regions.yaml", "regions:\n  lab: [registry.lab.test:5000, alias.lab.test:5000]\n")
	labYAML := `apiVersion: v1
data:
  .dockerconfigjson: ` + labB64 + `
kind: Secret
metadata:
  name: lab-pull
  namespace: lab
type: kubernetes.io/dockerconfigjson
`
	tests := []struct {
		name, env    string
		args         []string
		want         string
		wantStripped bool
	}{
		{name: "region us, key file with a newline", args: []string{"--region", "us", "--apikey-file", keyFile}, wantStripped: true,
			want: `apiVersion: v1
data:
  .dockerconfigjson: ` + usB64 + `
kind: Secret
metadata:
  name: all-icr-io
  namespace: default
type: kubernetes.io/dockerconfigjson
`},
		{name: "region us, env, json", env: key1, args: []string{"--region", "us", "-o", "json"},
			want: `{
  "apiVersion": "v1",
  "data": {
    ".dockerconfigjson": "` + usB64 + `"
  },
  "kind": "Secret",
  "metadata": {
    "name": "all-icr-io",
    "namespace": "default"
  },
  "type": "kubernetes.io/dockerconfigjson"
}
`},
		{name: "servers", env: key1, want: labYAML,
			args: []string{"--server", "registry.lab.test:5000", "--server", "alias.lab.test:5000", "--name", "lab-pull", "-n", "lab"}},
		{name: "regions file", env: key1, want: labYAML,
			args: []string{"--region", "lab", "--regions-file", regions, "--name", "lab-pull", "-n", "lab"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envKey, tc.env)
			code, out, errOut := run(t, append([]string{"pullsecret"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if out != tc.want {
				t.Fatalf("stdout\n%s\nwant\n%s", out, tc.want)
			}
			if got := strings.Contains(errOut, "stripped one trailing newline from the API key file"); got != tc.wantStripped {
				t.Fatalf("stderr says stripped = %v, want %v:\n%s", got, tc.wantStripped, errOut)
			}
			noSecretsOnStderr(t, errOut)
		})
	}
}

func TestAgainstAPIServer(t *testing.T) {
	srv := kubetest.StartT(t)
	cs, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	core := cs.CoreV1()
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key1File := write(t, dir, "key1", key1+"\n")
	key2File := write(t, dir, "key2", key2)
	apply := []string{"--kubeconfig", srv.KubeconfigPath, "-n", "apps", "--name", "regcred"}
	lab := []string{"--server", "registry.lab.test:5000", "--server", "alias.lab.test:5000"}

	t.Run("bad input applies nothing", func(t *testing.T) {
		tests := []struct {
			name, env string
			args      []string
			noApply   bool // leave out --kubeconfig (print mode)
			wantErr   string
		}{
			{name: "region not in the table", args: []string{"--region", "mars", "--apikey-file", key1File},
				wantErr: `unknown region "mars": want one of au, de, fr2, jp, uk, us`},
			{name: "empty API key file", args: append([]string{"--apikey-file", write(t, dir, "empty", "")}, lab...),
				wantErr: "empty API key in file"},
			{name: "API key file with only a newline", args: append([]string{"--apikey-file", write(t, dir, "nl", "\n")}, lab...),
				wantErr: "holds only a newline"},
			{name: "API key file with two newlines", args: append([]string{"--apikey-file", write(t, dir, "nl2", key1+"\n\n")}, lab...),
				wantErr: "only one trailing newline is stripped"},
			{name: "unreadable API key file", args: append([]string{"--apikey-file", filepath.Join(dir, "none")}, lab...),
				wantErr: "failed to read API key file"},
			{name: "no API key", args: lab, wantErr: "set --apikey-file or " + envKey},
			{name: "server with a scheme", env: key1, args: []string{"--server", "https://us.icr.io"}, wantErr: `"https://us.icr.io": has a scheme`},
			{name: "server with a path", env: key1, args: []string{"--server", "us.icr.io/ns"}, wantErr: `"us.icr.io/ns": has a path`},
			{name: "both region and server", env: key1, args: []string{"--region", "us", "--server", "us.icr.io"}, wantErr: "give --region or --server, not both"},
			{name: "neither region nor server", env: key1, wantErr: "give --region (au, de, fr2, jp, uk, us) or --server"},
			{name: "unreadable regions file", env: key1, args: []string{"--region", "us", "--regions-file", filepath.Join(dir, "none.yaml")},
				wantErr: "failed to read regions file"},
			{name: "regions file is a directory", env: key1, args: []string{"--region", "us", "--regions-file", dir},
				wantErr: "failed to read regions file"},
			{name: "regions file with an unknown field", env: key1,
				args:    []string{"--region", "us", "--regions-file", write(t, dir, "r.yaml", "regions:\n  us: [us.icr.io]\nservers: [x]\n")},
				wantErr: `unknown field "servers"`},
			{name: "region missing from the regions file", env: key1,
				args:    []string{"--region", "us", "--regions-file", write(t, dir, "r2.json", `{"regions": {"lab": ["registry.lab.test:5000"]}}`)},
				wantErr: `unknown region "us": want one of lab`},
			{name: "regions file with servers", env: key1, args: append([]string{"--regions-file", write(t, dir, "r3.yaml", "regions:\n  lab: [x.test]\n")}, lab...),
				wantErr: "--regions-file only applies with --region"},
			{name: "rotate without kubeconfig", env: key1, noApply: true, args: append([]string{"--rotate"}, lab...),
				wantErr: "--rotate needs --kubeconfig"},
			{name: "rotate a missing Secret", env: key1, args: append([]string{"--rotate"}, lab...),
				wantErr: "Secret does not exist: apps/regcred (run without --rotate to create it)"},
			{name: "output when applying", env: key1, args: append([]string{"-o", "json"}, lab...),
				wantErr: "--output only applies when printing"},
			{name: "bad output", env: key1, noApply: true, args: append([]string{"-o", "xml"}, lab...), wantErr: `invalid --output "xml"`},
			{name: "bad Secret name", env: key1, noApply: true, args: append([]string{"--name", "Reg_Cred"}, lab...), wantErr: `invalid Secret name "Reg_Cred"`},
			{name: "missing kubeconfig", env: key1, noApply: true, args: append([]string{"--kubeconfig", filepath.Join(dir, "no-kubeconfig")}, lab...),
				wantErr: "failed to load kubeconfig"},
			{name: "positional argument", env: key1, args: append([]string{"us"}, lab...), wantErr: "unknown command"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Setenv(envKey, tc.env)
				args := append([]string{"pullsecret"}, tc.args...)
				if !tc.noApply {
					args = append(args, apply...)
				}
				code, out, errOut := run(t, args...)
				if code != 1 || out != "" || !strings.Contains(errOut, tc.wantErr) {
					t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, no stdout, %q", code, out, errOut, tc.wantErr)
				}
				noSecretsOnStderr(t, errOut)
				secrets, err := core.Secrets("apps").List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if len(secrets.Items) != 0 {
					t.Fatalf("bad input applied Secret %s", secrets.Items[0].Name)
				}
			})
		}
	})

	t.Run("create then rotate", func(t *testing.T) {
		t.Setenv(envKey, "")
		data := func() string {
			t.Helper()
			s, err := core.Secrets("apps").Get(ctx, "regcred", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Type != corev1.SecretTypeDockerConfigJson {
				t.Fatalf("type %s", s.Type)
			}
			return string(s.Data[corev1.DockerConfigJsonKey])
		}
		args := append(append([]string{"pullsecret", "--apikey-file", key1File}, lab...), apply...)
		code, out, errOut := run(t, args...)
		if code != 0 || out != "secret/regcred created\n" {
			t.Fatalf("create: exit %d, stdout %q, stderr %s", code, out, errOut)
		}
		noSecretsOnStderr(t, errOut)
		if got, want := data(), labDoc(key1, auth1); got != want {
			t.Fatalf("created\n%s\nwant\n%s", got, want)
		}

		// Creating again is refused and leaves the Secret alone.
		args = append(append([]string{"pullsecret", "--apikey-file", key2File}, lab...), apply...)
		if code, out, errOut := run(t, args...); code != 1 || out != "" || !strings.Contains(errOut, "Secret already exists: apps/regcred (--rotate replaces its content)") {
			t.Fatalf("second create: exit %d, stdout %q, stderr %s", code, out, errOut)
		}
		if got, want := data(), labDoc(key1, auth1); got != want {
			t.Fatalf("a refused create changed the Secret:\n%s", got)
		}

		for _, p := range []struct{ name, secret string }{{"web", "regcred"}, {"batch", "regcred"}, {"plain", "other"}} {
			_, err := core.Pods("apps").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name}, Spec: corev1.PodSpec{
				Containers:       []corev1.Container{{Name: "c", Image: "registry.lab.test:5000/app:1"}},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: p.secret}},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := core.ServiceAccounts("apps").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		code, out, errOut = run(t, append(args, "--rotate")...)
		if code != 0 {
			t.Fatalf("rotate: exit %d: %s", code, errOut)
		}
		if want := "secret/regcred rotated\npod/batch\npod/web\nserviceaccount/puller\n"; out != want {
			t.Fatalf("rotate stdout\n%s\nwant\n%s", out, want)
		}
		noSecretsOnStderr(t, errOut)
		if got, want := data(), labDoc(key2, auth2); got != want {
			t.Fatalf("rotated\n%s\nwant\n%s", got, want)
		}
	})
}
