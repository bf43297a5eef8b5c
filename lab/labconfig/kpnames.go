package labconfig

import (
	"fmt"
	"net/netip"
	"strings"
)

// The public host names of IBM Cloud IAM and Key Protect (one region) that every lab answers
// itself with mockkp, for the synchronizer under test only: many synchronizers have no setting
// for the IAM token URL (the official client's default is IAM's public endpoint), so the labs
// make these names resolve to mockkp, serve them over TLS with the lab CA (lab/labca) and tell
// the synchronizer to trust that CA. Nothing in a lab ever looks the real hosts up: the node
// lab's synchronizer reads them from a hosts file of its own mount namespace, the kind lab's
// pods from their hostAliases.
var kpPublicHosts = []string{
	"iam.cloud.ibm.com",
	"private.iam.cloud.ibm.com",
	"us-south.kms.cloud.ibm.com",
	"private.us-south.kms.cloud.ibm.com",
}

// KPPublicURL is the keyprotect-url a lab's keyprotect-config gives the synchronizer: Key
// Protect's public endpoint, with no token-url (the runbook's config.json has none).
const KPPublicURL = "https://us-south.kms.cloud.ibm.com"

// KPPublicPort is where mockkp serves the public names over TLS (https's port: a client given
// only the host name dials it).
const KPPublicPort = 443

// KPPublicHosts returns the host names the labs resolve to mockkp.
func KPPublicHosts() []string { return append([]string(nil), kpPublicHosts...) }

// HostsFile returns base (a hosts file, e.g. the host's /etc/hosts) with the public names
// taken out of its lines (a line left with no name goes) and one line mapping them all to ip
// appended, so the public names resolve to mockkp and to nothing else.
func HostsFile(base []byte, ip string) ([]byte, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("invalid mockkp address %q for the hosts file: %w", ip, err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(string(base), "\n"), "\n") {
		if line, keep := withoutPublicHosts(line); keep {
			b.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&b, "# keysync lab: IAM's and Key Protect's public names are the lab's mockkp\n%s %s\n", addr, strings.Join(kpPublicHosts, " "))
	return []byte(b.String()), nil
}

// withoutPublicHosts drops the public names from a hosts-file line; it keeps comments and
// blank lines as they are, and a mapping only while it still names a host.
func withoutPublicHosts(line string) (string, bool) {
	content, comment, hasComment := strings.Cut(line, "#")
	f := strings.Fields(content)
	if len(f) < 2 {
		return line, true
	}
	kept := []string{f[0]}
	for _, name := range f[1:] {
		public := false
		for _, h := range kpPublicHosts {
			public = public || strings.EqualFold(strings.TrimSuffix(name, "."), h)
		}
		if !public {
			kept = append(kept, name)
		}
	}
	switch {
	case len(kept) == len(f):
		return line, true
	case len(kept) == 1:
		return "", false
	case hasComment:
		return strings.Join(kept, " ") + " #" + comment, true
	}
	return strings.Join(kept, " "), true
}
