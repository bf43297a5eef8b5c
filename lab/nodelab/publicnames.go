package nodelab

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labca"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// publicNames makes sure of the lab CA (kept across ups) and writes the synchronizer's hosts
// file: the host's /etc/hosts with IAM's and Key Protect's public names mapped to tlsAddr's
// address, mockkp's TLS listener. It returns the CA's files and the serving certificate's
// bytes (a new certificate must restart mockkp).
func (r *runner) publicNames(tlsAddr string) (labca.Files, []byte, error) {
	ca, _, err := labca.Ensure(r.l.LabCADir(), labconfig.KPPublicHosts(), time.Now())
	if err != nil {
		return ca, nil, err
	}
	cert, err := os.ReadFile(ca.Cert)
	if err != nil {
		return ca, nil, fmt.Errorf("failed to read the lab certificate: %w", err)
	}
	host, _, err := net.SplitHostPort(tlsAddr)
	if err != nil {
		return ca, nil, fmt.Errorf("invalid mockkp TLS address %q: %w", tlsAddr, err)
	}
	base, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return ca, nil, fmt.Errorf("failed to read /etc/hosts: %w", err)
	}
	hosts, err := labconfig.HostsFile(base, host)
	if err != nil {
		return ca, nil, err
	}
	if err := atomicfile.Write(r.l.SyncerHosts(), hosts, 0o644); err != nil {
		return ca, nil, fmt.Errorf("failed to write the synchronizer's hosts file: %w", err)
	}
	return ca, cert, nil
}

// publicNamesFor makes the synchronizer process p resolve the public names to mockkp (its own
// /etc/hosts, lab.Process.Hosts) and trust the lab CA (SSL_CERT_FILE, which Go, OpenSSL and
// curl read). It returns what p's fingerprint must cover: the hosts file and the CA.
func (r *runner) publicNamesFor(p *lab.Process) (string, error) {
	hosts, err := os.ReadFile(r.l.SyncerHosts())
	if err != nil {
		return "", fmt.Errorf("failed to read the synchronizer's hosts file (mockkp starts before it): %w", err)
	}
	ca := labca.FilesIn(r.l.LabCADir()).CA
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return "", fmt.Errorf("failed to read the lab CA: %w", err)
	}
	p.Hosts = r.l.SyncerHosts()
	p.Env = append(withoutEnv(os.Environ(), "SSL_CERT_FILE"), "SSL_CERT_FILE="+ca)
	return string(hosts) + string(caPEM), nil
}

// withoutEnv drops key's entries from env.
func withoutEnv(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
