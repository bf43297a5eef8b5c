package registryauth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestNewPassword(t *testing.T) {
	t.Parallel()
	a, err := NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPassword()
	if len(a) != 44 || a == b || strings.ContainsAny(a, "+/=\n") {
		t.Fatalf("passwords %d chars, equal %v, want 44 distinct base64url chars", len(a), a == b)
	}
}

func TestHtpasswd(t *testing.T) {
	t.Parallel()
	data, err := Htpasswd(Credentials{Username: "iamapikey", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	user, hash, ok := strings.Cut(strings.TrimSuffix(string(data), "\n"), ":")
	if !ok || user != "iamapikey" {
		t.Fatalf("htpasswd line %q: want iamapikey:<bcrypt>", data)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret")); err != nil {
		t.Fatalf("hash does not match the password: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("other")); err == nil {
		t.Fatal("hash matches another password")
	}
	for _, c := range []Credentials{{"", "p"}, {"a:b", "p"}, {"u", ""}} {
		if _, err := Htpasswd(c); err == nil {
			t.Errorf("Htpasswd(%v): want an error", c)
		}
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.json")
	c := Credentials{Username: "iamapikey", Password: "pw"}
	if err := Same([]string{"b.test:5000", "a.test"}, c).Write(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("auth file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(path)
	// base64("iamapikey:pw") = aWFtYXBpa2V5OnB3, no newline inside.
	want := "{\n  \"auths\": {\n    \"a.test\": {\n      \"auth\": \"aWFtYXBpa2V5OnB3\"\n    },\n    \"b.test:5000\": {\n      \"auth\": \"aWFtYXBpa2V5OnB3\"\n    }\n  }\n}\n"
	if string(data) != want {
		t.Fatalf("auth file:\n%s\nwant:\n%s", data, want)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := f.For("b.test:5000/keysync/x:1"); !ok || got != c {
		t.Fatalf("For = %v %v, want %v", got, ok, c)
	}
	if _, ok := f.For("c.test/x"); ok {
		t.Fatal("For(c.test) found credentials")
	}
	if got, err := f.Single(); err != nil || got != c {
		t.Fatalf("Single = %v %v", got, err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc, want string }{
		{"empty", "", "empty"},
		{"blank", " \n", "empty"},
		{"not json", "iamapikey:pw", "not a containers-auth.json"},
		{"no auths", `{"auths":{}}`, "no \"auths\""},
		{"bad base64", `{"auths":{"a.test":{"auth":"%%"}}}`, "not base64"},
		{"no colon", `{"auths":{"a.test":{"auth":"aWFtYXBpa2V5"}}}`, "user:password"},
		{"no password", `{"auths":{"a.test":{"username":"u"}}}`, "no user or no password"},
		{"scheme", `{"auths":{"https://a.test":{"username":"u","password":"p"}}}`, "scheme"},
		{"path", `{"auths":{"a.test/ns":{"username":"u","password":"p"}}}`, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v, want an error with %q", err, tt.want)
			}
		})
	}
	f, err := Parse([]byte(`{"auths":{"a.test":{"username":"u","password":"p"},"b.test":{"auth":"dTpx"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Single(); err == nil {
		t.Fatal("Single of differing credentials: want an error")
	}
}

func TestParseCredentials(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in string
		ok bool
	}{{"u:p", true}, {"u:p:q", true}, {"u", false}, {":p", false}, {"u:", false}} {
		c, err := ParseCredentials(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseCredentials(%q) = %v, %v", tt.in, c, err)
		}
	}
	if s := (Credentials{"u", "secret"}).String(); strings.Contains(s, "secret") {
		t.Fatalf("String() leaks the password: %s", s)
	}
}

func TestTransport(t *testing.T) {
	t.Parallel()
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		got = append(got, fmt.Sprintf("%v %s:%s", ok, u, p))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, f := range []File{Same([]string{host}, Credentials{"iamapikey", "pw"}), Same([]string{"other.test"}, Credentials{"u", "p"})} {
		resp, err := f.Client(nil).Get(srv.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{"true iamapikey:pw", "false :"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("server saw %q, want %q", got, want)
	}
}

func TestEnsure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hp, ap := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "auth.json")
	hosts := []string{"127.0.0.1:5001", "icr.keysync.test:5000"}
	c1, fresh, err := Ensure(hp, ap, hosts, false)
	if err != nil || !fresh {
		t.Fatalf("first Ensure: fresh %v, %v", fresh, err)
	}
	st1, _ := os.Stat(hp)
	c2, fresh, err := Ensure(hp, ap, hosts, false)
	if err != nil || fresh || c2 != c1 {
		t.Fatalf("second Ensure: fresh %v, same %v, %v: want the kept password", fresh, c2 == c1, err)
	}
	if st2, _ := os.Stat(hp); !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("second Ensure rewrote a matching htpasswd")
	}
	c3, fresh, err := Ensure(hp, ap, hosts, true)
	if err != nil || !fresh || c3 == c1 {
		t.Fatalf("rotating Ensure: fresh %v, same %v, %v: want a new password", fresh, c3 == c1, err)
	}
	if !HtpasswdMatches(hp, c3) || HtpasswdMatches(hp, c1) {
		t.Fatal("htpasswd does not hold exactly the new password")
	}
	f, err := Load(ap)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Single(); got != c3 || strings.Join(f.Hosts(), ",") != strings.Join(hosts, ",") {
		t.Fatalf("auth file %v for %v", got, f.Hosts())
	}
}
