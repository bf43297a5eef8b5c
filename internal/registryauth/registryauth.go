// Package registryauth is what keysync's labs and suites share about registry credentials:
// an API-key-like password, the registry's htpasswd file (bcrypt) and the containers-auth.json
// file (containers-auth.json(5)) that every push and pull of the run reads its credentials
// from. Passwords never go to a log or an error; only the files carry them (mode 0600).
package registryauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// Username is the registry user of the labs: IBM Cloud Container Registry's user for API keys
// (pullsecret.Username; this package links no Kubernetes API, the node agent uses it).
const Username = "iamapikey"

// maxAuthFileBytes bounds an auth file.
const maxAuthFileBytes = 1 << 20

// Credentials are one registry login.
type Credentials struct {
	Username string
	Password string
}

// String hides the password (Credentials may end up in a %v).
func (c Credentials) String() string { return c.Username + ":<redacted>" }

// ParseCredentials parses "user:password" (--creds); both parts must be non-empty.
func ParseCredentials(s string) (Credentials, error) {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return Credentials{}, errors.New("invalid credentials: want user:password, both non-empty")
	}
	return Credentials{Username: user, Password: pass}, nil
}

// NewPassword returns a random API-key-like password: 44 characters of base64url (264 bits),
// the shape of an IBM Cloud API key.
func NewPassword() (string, error) {
	b := make([]byte, 33)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("failed to generate a registry password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Htpasswd returns an htpasswd file with one bcrypt entry for c (what distribution's
// htpasswd access controller accepts).
func Htpasswd(c Credentials) ([]byte, error) {
	if c.Username == "" || strings.ContainsAny(c.Username, ":\n") || c.Password == "" {
		return nil, errors.New("failed to build htpasswd: want a user without ':' and a non-empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("failed to hash the registry password: %w", err)
	}
	return []byte(c.Username + ":" + string(hash) + "\n"), nil
}

// File is a containers-auth.json: credentials per registry host ("host" or "host:port").
type File map[string]Credentials

type fileEntry struct {
	Auth string `json:"auth"`
}

type fileDoc struct {
	Auths map[string]fileEntry `json:"auths"`
}

// Same returns a File giving c for every host.
func Same(hosts []string, c Credentials) File {
	f := File{}
	for _, h := range hosts {
		f[h] = c
	}
	return f
}

// Hosts returns the file's hosts, sorted.
func (f File) Hosts() []string {
	hosts := make([]string, 0, len(f))
	for h := range f {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}

// For returns the credentials for the registry host of an image reference (the part before
// the first '/'), and whether the file has them.
func (f File) For(ref string) (Credentials, bool) {
	host, _, _ := strings.Cut(ref, "/")
	c, ok := f[host]
	return c, ok
}

// Single returns the one login every host shares; an error when the hosts disagree.
func (f File) Single() (Credentials, error) {
	var c Credentials
	for i, h := range f.Hosts() {
		if i == 0 {
			c = f[h]
		} else if f[h] != c {
			return Credentials{}, errors.New("the auth file holds different credentials for different hosts")
		}
	}
	if c.Username == "" {
		return Credentials{}, errors.New("the auth file holds no credentials")
	}
	return c, nil
}

// Marshal renders the file (keys sorted, a final newline).
func (f File) Marshal() ([]byte, error) {
	doc := fileDoc{Auths: map[string]fileEntry{}}
	for h, c := range f {
		if err := validateHost(h); err != nil {
			return nil, fmt.Errorf("failed to render the auth file: %w", err)
		}
		if c.Username == "" || strings.Contains(c.Username, ":") || c.Password == "" {
			return nil, fmt.Errorf("failed to render the auth file: host %s: want a user without ':' and a non-empty password", h)
		}
		doc.Auths[h] = fileEntry{Auth: base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))}
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to render the auth file: %w", err)
	}
	return append(data, '\n'), nil
}

// Write writes f to path atomically with mode 0600.
func (f File) Write(path string) error {
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("failed to write the auth file: %w", err)
	}
	return nil
}

// Parse reads a containers-auth.json document: every "auths" entry needs "auth" (base64 of
// user:password) or "username" and "password". An empty document, no entries or a malformed
// entry are errors; the error never quotes a credential.
func Parse(data []byte) (File, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("the auth file is empty")
	}
	var doc struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("the auth file is not a containers-auth.json document (JSON with \"auths\")")
	}
	if len(doc.Auths) == 0 {
		return nil, errors.New("the auth file has no \"auths\" entries")
	}
	f := File{}
	for host, e := range doc.Auths {
		if err := validateHost(host); err != nil {
			return nil, fmt.Errorf("the auth file's entry: %w", err)
		}
		c := Credentials{Username: e.Username, Password: e.Password}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("the auth file's entry for %s: \"auth\" is not base64", host)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("the auth file's entry for %s: \"auth\" is not base64 of user:password", host)
			}
			c = Credentials{Username: user, Password: pass}
		}
		if c.Username == "" || c.Password == "" {
			return nil, fmt.Errorf("the auth file's entry for %s has no user or no password", host)
		}
		f[host] = c
	}
	return f, nil
}

// Load reads and parses the auth file at path.
func Load(path string) (File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the auth file: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxAuthFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read the auth file %s: %w", path, err)
	}
	if len(data) > maxAuthFileBytes {
		return nil, fmt.Errorf("failed to read the auth file %s: larger than %d bytes", path, maxAuthFileBytes)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("invalid auth file %s: %w", path, err)
	}
	return f, nil
}

// validateHost checks an "auths" key: a registry host or host:port, without a scheme, a path
// or white space (pullsecret.ValidateServer checks DNS syntax fully).
func validateHost(h string) error {
	switch {
	case h == "":
		return errors.New("invalid registry host: empty")
	case strings.Contains(h, "://"):
		return fmt.Errorf("invalid registry host %q: has a scheme; give host[:port] only", h)
	case strings.Contains(h, "/"):
		return fmt.Errorf("invalid registry host %q: has a path; give host[:port] only", h)
	case strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("invalid registry host %q: contains white space or a control character", h)
	}
	return nil
}
