package nodelab

import (
	"fmt"
	"net"
	"os"
	"slices"
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
	// Port 53 of mockkp's own loopback address: nothing listens there, so every lookup the
	// hosts file does not answer is refused at once, never sent to the host's resolver.
	resolv := "# keysync lab: no DNS for the synchronizer (names come from its hosts file only)\nnameserver " + host +
		"\noptions attempts:1 timeout:1\n"
	if err := atomicfile.Write(r.l.SyncerResolvConf(), []byte(resolv), 0o644); err != nil {
		return ca, nil, fmt.Errorf("failed to write the synchronizer's resolv.conf: %w", err)
	}
	return ca, cert, nil
}

// proxyVars are the environment variables that would send the synchronizer's requests to a
// proxy, which would look the public names up itself: never passed on.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"}

// publicNamesFor makes the synchronizer process p resolve the public names to mockkp and no
// name through DNS (its own /etc/hosts and /etc/resolv.conf, lab.Process.Binds), talk to no
// proxy, and trust the lab CA (SSL_CERT_FILE, which Go, OpenSSL and curl read). It returns
// what p's fingerprint must cover: the files and the CA.
func (r *runner) publicNamesFor(p *lab.Process) (string, error) {
	hosts, err := os.ReadFile(r.l.SyncerHosts())
	if err != nil {
		return "", fmt.Errorf("failed to read the synchronizer's hosts file (mockkp starts before it): %w", err)
	}
	resolv, err := os.ReadFile(r.l.SyncerResolvConf())
	if err != nil {
		return "", fmt.Errorf("failed to read the synchronizer's resolv.conf (mockkp starts before it): %w", err)
	}
	ca := labca.FilesIn(r.l.LabCADir()).CA
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return "", fmt.Errorf("failed to read the lab CA: %w", err)
	}
	p.Binds = []lab.Bind{{Source: r.l.SyncerHosts(), Target: "/etc/hosts"}, {Source: r.l.SyncerResolvConf(), Target: "/etc/resolv.conf"}}
	p.Env = append(withoutEnv(os.Environ(), append(proxyVars, "SSL_CERT_FILE")...), "SSL_CERT_FILE="+ca)
	return string(hosts) + string(resolv) + string(caPEM), nil
}

// withoutEnv drops the entries of keys from env.
func withoutEnv(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(keys, k) {
			out = append(out, kv)
		}
	}
	return out
}
