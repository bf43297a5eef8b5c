package kindlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labca"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// IAM's and Key Protect's public names inside the kind lab (capability kp-public-names): mockkp
// serves them over TLS on :443 of its kind-network address with the lab CA's certificate; the
// synchronizer's pods resolve them through hostAliases (the lab has no DNS addon, and a pod's
// /etc/hosts is read first) and trust the CA from the ConfigMap LabCAConfigMap.

// LabCAConfigMap is the ConfigMap (key labca.CAFile, "ca.crt") in the synchronizer's namespace
// holding the lab CA: a synchronizer under test mounts it and trusts it.
const LabCAConfigMap = "keysync-lab-ca"

// labCAMount is where the reference synchronizer's container sees the ConfigMap.
const labCAMount = "/etc/keysync-lab-ca"

// mockkpTLSPort is mockkp's HTTPS port in its container (the public names' port).
const mockkpTLSPort = "443"

// labCADir holds the kind lab's CA (kept across ups; a new one makes mockkp restart).
func (l *Lab) labCADir() string { return filepath.Join(l.Opts.OutDir, "lab-ca") }

// ensureLabCA makes or reuses the lab CA for the public names.
func (l *Lab) ensureLabCA() (labca.Files, bool, error) {
	return labca.Ensure(l.labCADir(), labconfig.KPPublicHosts(), time.Now())
}

// mockkpTLSArgs are mockkp's arguments for its TLS listener (the CA dir is mounted at /tls).
func mockkpTLSArgs() []string {
	return []string{"--tls-addr", ":" + mockkpTLSPort, "--tls-cert", "/tls/" + labca.CertFile, "--tls-key", "/tls/" + labca.KeyFile}
}

// mockkpServesPublicNames reports whether the running mockkp container was started with the
// TLS listener (a container from before the public names must be recreated).
func mockkpServesPublicNames(ctx context.Context) (bool, error) {
	out, err := docker(ctx, nil, "inspect", "-f", "{{json .Args}}", MockKPContainer)
	if err != nil {
		return false, err
	}
	var args []string
	if err := json.Unmarshal([]byte(out), &args); err != nil {
		return false, fmt.Errorf("failed to read the %s container's arguments: %w", MockKPContainer, err)
	}
	return slices.Contains(args, "--tls-addr"), nil
}

// publicNamesPatch is a JSON 6902 patch (YAML) giving a pod template hostAliases that map the
// public names to mockkp's address ip.
func publicNamesPatch(ip string) string {
	return "- op: add\n  path: /spec/template/spec/hostAliases\n  value:\n    - ip: \"" + ip + "\"\n      hostnames: [" +
		strings.Join(quoteAll(labconfig.KPPublicHosts()), ", ") + "]\n"
}

// labCATrustPatch mounts LabCAConfigMap into the reference synchronizer's container and points
// SSL_CERT_FILE at it.
func labCATrustPatch() string {
	return "- op: add\n  path: /spec/template/spec/volumes/-\n  value: {name: keysync-lab-ca, configMap: {name: " + LabCAConfigMap + "}}\n" +
		"- op: add\n  path: /spec/template/spec/containers/0/volumeMounts/-\n  value: {name: keysync-lab-ca, mountPath: " + labCAMount + ", readOnly: true}\n" +
		"- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {name: SSL_CERT_FILE, value: " + labCAMount + "/" + labca.CAFile + "}\n"
}

// labCAGenerator is a kustomization's configMapGenerator for LabCAConfigMap from the file
// ca.crt beside it (fixed name: a synchronizer under test refers to it).
func labCAGenerator() string {
	return "configMapGenerator:\n  - name: " + LabCAConfigMap + "\n    namespace: " + names.Namespace + "\n    files: [" + labca.CAFile + "]\n" +
		"    options: {disableNameSuffixHash: true}\n"
}

// copyLabCA puts the lab CA's certificate into an overlay directory (a kustomization reads
// generator files from its own directory only) and returns its sha256 (hex).
func copyLabCA(caFile, overlay string) (string, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("failed to read the lab CA: %w", err)
	}
	if err := os.WriteFile(filepath.Join(overlay, labca.CAFile), data, 0o644); err != nil {
		return "", fmt.Errorf("failed to copy the lab CA into %s: %w", overlay, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = `"` + s + `"`
	}
	return out
}

// referenceOverlay is the kustomization deploying syncer/deploy (at base, relative) with the
// lab's image, --allow-insecure-kp (the faults point keyprotect-config at plain-HTTP
// addresses) and, when mockkpIP is set (a lab with mockkp), the lab CA and the public names'
// hostAliases.
func referenceOverlay(base, image, tag, mockkpIP, caSum string) string {
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + base + "\n" +
		"images:\n  - name: " + SyncerImageName + "\n    newName: " + image + "\n    newTag: \"" + tag + "\"\n"
	patch := "- op: add\n  path: /spec/template/spec/containers/0/args/-\n  value: --allow-insecure-kp\n"
	if mockkpIP != "" {
		k += labCAGenerator()
		patch += labCATrustPatch() + publicNamesPatch(mockkpIP)
	}
	k += "patches:\n  - target: {kind: DaemonSet, name: " + names.Addon + "}\n    patch: |-\n" + indent(patch, 6)
	if mockkpIP != "" {
		k += "  - target: {kind: DaemonSet, name: " + names.Addon + "}\n    patch: |-\n" + indent(caAnnotationPatch(caSum), 6)
	}
	return k
}

// LabCAAnnotation is the pod-template annotation holding the lab CA's sha256: a new CA rolls
// the synchronizer's pods (they read their trusted roots once, at start).
const LabCAAnnotation = "keysync.dev/lab-ca-sha256"

// caAnnotationPatch is a strategic-merge patch putting the CA's sum on a pod template.
func caAnnotationPatch(caSum string) string {
	return "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: any}\nspec:\n  template:\n    metadata:\n      annotations:\n" +
		"        " + LabCAAnnotation + ": \"" + caSum + "\"\n"
}

// foreignOverlay wraps a synchronizer's kustomize directory (base, relative): the lab CA's
// ConfigMap beside it and the public names' hostAliases in every DaemonSet (a strategic merge,
// so hostAliases of its own stay). Trusting the CA is the synchronizer's own business (mount
// LabCAConfigMap).
func foreignOverlay(base, mockkpIP, caSum string) string {
	return "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + base + "\n" +
		labCAGenerator() +
		"patches:\n  - target: {kind: DaemonSet}\n    patch: |-\n" +
		indent("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: any}\nspec:\n  template:\n"+
			"    metadata:\n      annotations:\n        "+LabCAAnnotation+": \""+caSum+"\"\n    spec:\n      hostAliases:\n"+
			"        - ip: \""+mockkpIP+"\"\n          hostnames: ["+strings.Join(quoteAll(labconfig.KPPublicHosts()), ", ")+"]\n", 6)
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "") + "\n"
}

// publicNamesFor prepares an overlay directory for the public names: it copies the lab CA
// into it, declares capability kp-public-names (the overlay maps the names for the
// synchronizer it deploys) and returns mockkp's kind-network address, or "" when the lab runs
// no mockkp (then the overlay adds neither), and the CA's sha256. Only a synchronizer deployed through such an
// overlay gets the capability: with "none" nothing maps the names, and a keyprotect-config
// naming the real hosts must never be given to it.
func (l *Lab) publicNamesFor(ctx context.Context, overlay string) (ip, caSum string, err error) {
	if l.Env.KPCAFile == "" {
		return "", "", nil
	}
	if caSum, err = copyLabCA(l.Env.KPCAFile, overlay); err != nil {
		return "", "", err
	}
	if ip, err = containerIP(ctx, MockKPContainer, KindNetwork); err != nil {
		return "", "", err
	}
	if !l.Env.Has(lab.CapKPPublicNames) {
		l.Env.Capabilities = append(l.Env.Capabilities, lab.CapKPPublicNames)
	}
	return ip, caSum, nil
}
