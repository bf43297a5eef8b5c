package pullsecret_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/pullsecret"
)

// The expected bytes below were computed outside Go, e.g.
//
//	printf %s 'iamapikey:dummy-apikey-0123' | base64   # aWFtYXBpa2V5OmR1bW15LWFwaWtleS0wMTIz
//
// and `printf %s "$json" | base64` for the whole document. With a trailing newline
// (`echo iamapikey:dummy-apikey-0123 | base64`) the auth would end in "Cg==" instead.
const (
	dummyKey   = "dummy-apikey-0123"
	dummyAuth  = "aWFtYXBpa2V5OmR1bW15LWFwaWtleS0wMTIz"
	dummyEntry = `{"auth":"` + dummyAuth + `","password":"dummy-apikey-0123","username":"iamapikey"}`
	// usDockerConfig is the .dockerconfigjson of region us with dummyKey.
	usDockerConfig = `{"auths":{"private.us.icr.io":` + dummyEntry + `,"registry.ng.bluemix.net":` + dummyEntry + `,"us.icr.io":` + dummyEntry + `}}`
	// usDockerConfigB64 is base64 of usDockerConfig.
	usDockerConfigB64 = "eyJhdXRocyI6eyJwcml2YXRlLnVzLmljci5pbyI6eyJhdXRoIjoiYVdGdFlYQnBhMlY1T21SMWJXMTVMV0Z3YVd0bGVTMHdNVEl6IiwicGFzc3dvcmQiOiJkdW1teS1hcGlrZXktMDEyMyIsInVzZXJuYW1lIjoiaWFtYXBpa2V5In0sInJlZ2lzdHJ5Lm5nLmJsdWVtaXgubmV0Ijp7ImF1dGgiOiJhV0Z0WVhCcGEyVjVPbVIxYlcxNUxXRndhV3RsZVMwd01USXoiLCJwYXNzd29yZCI6ImR1bW15LWFwaWtleS0wMTIzIiwidXNlcm5hbWUiOiJpYW1hcGlrZXkifSwidXMuaWNyLmlvIjp7ImF1dGgiOiJhV0Z0WVhCcGEyVjVPbVIxYlcxNUxXRndhV3RsZVMwd01USXoiLCJwYXNzd29yZCI6ImR1bW15LWFwaWtleS0wMTIzIiwidXNlcm5hbWUiOiJpYW1hcGlrZXkifX19"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	tests := []struct{ password, want string }{
		{dummyKey, dummyAuth},
		{"dummy-apikey-4567", "aWFtYXBpa2V5OmR1bW15LWFwaWtleS00NTY3"},
		{"x", "aWFtYXBpa2V5Ong="},
		{"a&b<c>", "aWFtYXBpa2V5OmEmYjxjPg=="},
	}
	for _, tc := range tests {
		if got := pullsecret.Auth(pullsecret.Username, tc.password); got != tc.want {
			t.Errorf("Auth(%q) = %q, want %q", tc.password, got, tc.want)
		}
	}
}

func TestDockerConfigJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		servers []string
		key     string
		want    string
	}{
		{"region us, dummy key", pullsecret.DefaultRegions()["us"], dummyKey, usDockerConfig},
		{"unsorted with a duplicate", []string{"us.icr.io", "registry.ng.bluemix.net", "us.icr.io", "private.us.icr.io"}, dummyKey, usDockerConfig},
		{"one server with a port", []string{"registry.lab.test:5000"}, "x",
			`{"auths":{"registry.lab.test:5000":{"auth":"aWFtYXBpa2V5Ong=","password":"x","username":"iamapikey"}}}`},
		{"JSON-escaped password, raw auth", []string{"[::1]:5000"}, "a&b<c>",
			`{"auths":{"[::1]:5000":{"auth":"aWFtYXBpa2V5OmEmYjxjPg==","password":"a\u0026b\u003cc\u003e","username":"iamapikey"}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pullsecret.DockerConfigJSON(tc.servers, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	sec, err := pullsecret.Build("default", "all-icr-io", pullsecret.DefaultRegions()["us"], dummyKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sec.Data[".dockerconfigjson"]); got != usDockerConfig {
		t.Fatalf(".dockerconfigjson = %s", got)
	}
	tests := []struct{ format, want string }{
		{"yaml", `apiVersion: v1
data:
  .dockerconfigjson: ` + usDockerConfigB64 + `
kind: Secret
metadata:
  name: all-icr-io
  namespace: default
type: kubernetes.io/dockerconfigjson
`},
		{"json", `{
  "apiVersion": "v1",
  "data": {
    ".dockerconfigjson": "` + usDockerConfigB64 + `"
  },
  "kind": "Secret",
  "metadata": {
    "name": "all-icr-io",
    "namespace": "default"
  },
  "type": "kubernetes.io/dockerconfigjson"
}
`},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			for range 2 { // the same Secret, the same bytes
				got, err := pullsecret.Render(sec, tc.format)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tc.want {
					t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
				}
			}
		})
	}
	if _, err := pullsecret.Render(sec, "xml"); err == nil {
		t.Fatal("Render(xml) succeeded")
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ns, secret string
		servers          []string
		key, wantErr     string
	}{
		{"bad name", "default", "Bad_Name", []string{"us.icr.io"}, dummyKey, `invalid Secret name "Bad_Name"`},
		{"bad namespace", "a.b", "x", []string{"us.icr.io"}, dummyKey, `invalid namespace "a.b"`},
		{"no servers", "default", "x", nil, dummyKey, "no registry servers"},
		{"scheme", "default", "x", []string{"https://us.icr.io"}, dummyKey, "has a scheme"},
		{"empty key", "default", "x", []string{"us.icr.io"}, "", "empty API key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pullsecret.Build(tc.ns, tc.secret, tc.servers, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		server  string
		wantErr string // "" = valid
	}{
		{"us.icr.io", ""},
		{"registry.lab.test:5000", ""},
		{"localhost", ""},
		{"127.0.0.1:5000", ""},
		{"[::1]:5000", ""},
		{"", "empty"},
		{"https://us.icr.io", "has a scheme"},
		{"http://127.0.0.1:5000", "has a scheme"},
		{"us.icr.io/ns", "has a path"},
		{"us.icr.io/", "has a path"},
		{"US.icr.io", "lowercase DNS name"},
		{"us.icr.io ", "white space"},
		{"us_icr.io", "lowercase DNS name"},
		{"us.icr.io:0", "port must be"},
		{"us.icr.io:65536", "port must be"},
		{"us.icr.io:05000", "port must be"},
		{"https:us.icr.io", "port must be"},
		{"::1", "want host or host:port"},
		{"[127.0.0.1]:5000", "IPv6 address between brackets"},
		{"user@us.icr.io", "lowercase DNS name"},
	}
	for _, tc := range tests {
		err := pullsecret.ValidateServer(tc.server)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidateServer(%q) = %v, want ok", tc.server, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pullsecret.ErrInvalidServer)):
			t.Errorf("ValidateServer(%q) = %v, want an ErrInvalidServer with %q", tc.server, err, tc.wantErr)
		}
	}
}

func TestDefaultRegions(t *testing.T) {
	t.Parallel()
	regions := pullsecret.DefaultRegions()
	if got := pullsecret.RegionNames(regions); !slices.Equal(got, []string{"au", "de", "fr2", "jp", "uk", "us"}) {
		t.Fatalf("regions = %v", got)
	}
	if err := pullsecret.ValidateRegions(regions); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"us":  {"private.us.icr.io", "registry.ng.bluemix.net", "us.icr.io"},
		"fr2": {"de.icr.io", "fr2.icr.io", "private.de.icr.io", "private.fr2.icr.io", "registry.eu-de.bluemix.net"},
		"jp":  {"au.icr.io", "jp.icr.io", "private.au.icr.io", "private.jp.icr.io", "registry.au-syd.bluemix.net"},
	}
	for r, w := range want {
		got, err := pullsecret.Servers(regions, r)
		if err != nil || !slices.Equal(got, w) {
			t.Errorf("Servers(%s) = %v, %v; want %v", r, got, err, w)
		}
	}
	regions["us"][0] = "changed.example"
	if pullsecret.DefaultRegions()["us"][0] != "us.icr.io" {
		t.Fatal("DefaultRegions returns shared state")
	}
	_, err := pullsecret.Servers(regions, "mars")
	if !errors.Is(err, pullsecret.ErrUnknownRegion) || !strings.Contains(err.Error(), "au, de, fr2, jp, uk, us") {
		t.Fatalf("Servers(mars) = %v", err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRegions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		path          string // instead of content
		want          map[string][]string
		wantErr       string
	}{
		{name: "yaml", content: "regions:\n  us: [us.icr.io, private.us.icr.io]\n  lab:\n    - registry.lab.test:5000\n",
			want: map[string][]string{"us": {"us.icr.io", "private.us.icr.io"}, "lab": {"registry.lab.test:5000"}}},
		{name: "json", content: `{"regions": {"lab": ["registry.lab.test:5000", "alias.lab.test:5000"]}}`,
			want: map[string][]string{"lab": {"registry.lab.test:5000", "alias.lab.test:5000"}}},
		{name: "unknown field", content: "regions:\n  us: [us.icr.io]\ndefault: us\n", wantErr: `unknown field "default"`},
		{name: "misspelled top level", content: `{"region": {"us": ["us.icr.io"]}}`, wantErr: `unknown field "region"`},
		{name: "duplicate region", content: "regions:\n  us: [us.icr.io]\n  us: [uk.icr.io]\n", wantErr: "failed to parse"},
		{name: "not a list", content: "regions:\n  us: us.icr.io\n", wantErr: "failed to parse"},
		{name: "empty file", content: "", wantErr: "no regions"},
		{name: "no host names", content: "regions:\n  us: []\n", wantErr: `region "us" lists no host names`},
		{name: "bad region name", content: "regions:\n  US: [us.icr.io]\n", wantErr: `invalid region name "US"`},
		{name: "host with scheme", content: "regions:\n  us: [https://us.icr.io]\n", wantErr: "has a scheme"},
		{name: "host with path", content: "regions:\n  us: [us.icr.io/ns]\n", wantErr: "has a path"},
		{name: "missing file", path: filepath.Join(dir, "missing.yaml"), wantErr: "failed to read regions file"},
		{name: "a directory", path: dir, wantErr: "failed to read regions file"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path
			if p == "" {
				p = writeFile(t, dir, strings.Repeat("r", i+1)+".yaml", tc.content)
			}
			got, err := pullsecret.LoadRegions(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for r, w := range tc.want {
				if !slices.Equal(got[r], w) {
					t.Fatalf("region %s = %v, want %v", r, got[r], w)
				}
			}
		})
	}
}

func TestReadAPIKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == pullsecret.EnvAPIKey {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name, content string // content "" with noFile: no file flag
		noFile        bool
		path          string
		env           string
		want          string
		wantStripped  bool
		wantErr       string
	}{
		{name: "one trailing newline stripped", content: "key-0123\n", want: "key-0123", wantStripped: true},
		{name: "no newline", content: "key-0123", want: "key-0123"},
		{name: "file wins over env", content: "from-file", env: "from-env", want: "from-file"},
		{name: "env", noFile: true, env: "from-env", want: "from-env"},
		{name: "empty file", content: "", wantErr: "empty API key in file"},
		{name: "only a newline", content: "\n", wantErr: "holds only a newline"},
		{name: "two newlines", content: "key-0123\n\n", wantErr: "white space or a control character"},
		{name: "CRLF", content: "key-0123\r\n", wantErr: "white space or a control character"},
		{name: "leading space", content: " key-0123", wantErr: "white space or a control character"},
		{name: "missing file", path: filepath.Join(dir, "missing"), wantErr: "failed to read API key file"},
		{name: "too large", content: strings.Repeat("k", 4097), wantErr: "larger than 4096 bytes"},
		{name: "no key at all", noFile: true, wantErr: "set --apikey-file or " + pullsecret.EnvAPIKey},
		{name: "env with newline", noFile: true, env: "key-0123\n", wantErr: "white space or a control character"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path
			if p == "" && !tc.noFile {
				p = writeFile(t, dir, strings.Repeat("k", i+1), tc.content)
			}
			got, err := pullsecret.ReadAPIKey(p, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "key-0123") {
					t.Fatalf("error carries the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Value != tc.want || got.StrippedNewline != tc.wantStripped {
				t.Fatalf("got %q stripped=%v, want %q stripped=%v", got.Value, got.StrippedNewline, tc.want, tc.wantStripped)
			}
		})
	}
}
