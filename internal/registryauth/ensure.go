package registryauth

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// Ensure makes a registry's htpasswd file and a lab's auth file agree on one password for
// user Username and the given hosts: the password already in the auth file when it has one
// (so a lab's up is idempotent), a new random one when it has none or rotate is set. The
// htpasswd file (mode 0600) is rewritten only when its hash does not match; distribution's
// registry rereads it when it changes, so a rotation needs no restart. It returns the
// credentials and whether they are new.
func Ensure(htpasswdPath, authPath string, hosts []string, rotate bool) (Credentials, bool, error) {
	var creds Credentials
	if f, err := Load(authPath); err == nil && !rotate {
		if c, err := f.Single(); err == nil && c.Username == Username {
			creds = c
		}
	}
	fresh := creds.Password == ""
	if fresh {
		pw, err := NewPassword()
		if err != nil {
			return Credentials{}, false, err
		}
		creds = Credentials{Username: Username, Password: pw}
	}
	if !HtpasswdMatches(htpasswdPath, creds) {
		data, err := Htpasswd(creds)
		if err != nil {
			return Credentials{}, false, err
		}
		if err := atomicfile.Write(htpasswdPath, data, 0o600); err != nil {
			return Credentials{}, false, fmt.Errorf("failed to write the registry's htpasswd: %w", err)
		}
	}
	if err := Same(hosts, creds).Write(authPath); err != nil {
		return Credentials{}, false, err
	}
	return creds, fresh, nil
}

// HtpasswdMatches reports whether the htpasswd file at path has exactly one entry, for c.
func HtpasswdMatches(path string, c Credentials) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	line := string(bytes.TrimSpace(data))
	user, hash, ok := strings.Cut(line, ":")
	if !ok || strings.Contains(line, "\n") || user != c.Username {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.Password)) == nil
}
