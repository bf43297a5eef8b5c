package nodelab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// Secrets are encrypted at rest: kube-apiserver's EncryptionConfiguration puts keysync's KMS v2
// plug-in (cmd/keysync-kms-plugin, a lab process started before kube-apiserver, wrapping DEKs
// with its own root key in mockkp) first for secrets, then identity, so Secrets written before
// still read; after the switch every Secret is rewritten once.

// KPKMSRootKeyID is the seeded mockkp root key (CRK_ID) of the KMS plug-in.
const KPKMSRootKeyID = "3b9e6c1d-5f2a-4e7b-8c0d-9a1f2e3d4c5b"

// kmsPluginConfig renders the runbook's kmsplugin-config.yaml for the lab's mockkp on loopback.
func kmsPluginConfig(socket, mockKP string, healthPort int) string {
	kp := "http://" + mockKP
	return labconfig.KMSPluginConfig(lab.KindNode, labconfig.KMSPlugin{Socket: socket, HealthPort: healthPort,
		TokenURL: kp + "/identity/token", URL: kp, APIKey: KPAPIKey, InstanceID: KPInstanceID, RootKeyID: KPKMSRootKeyID})
}

// encryptionConfig is kube-apiserver's --encryption-provider-config.
func encryptionConfig(socket string) string { return labconfig.EncryptionConfig(socket) }

func (r *runner) startKMSPlugin(ctx context.Context) (string, error) {
	p := r.process(componentNamed("kms-plugin"))
	_, ours := p.Running()
	health, err := r.port(&r.st.KMSHealth, ours)
	if err != nil {
		return "", err
	}
	_, portStr, _ := strings.Cut(health, ":")
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", fmt.Errorf("failed to parse the KMS plug-in's health address %q: %w", health, err)
	}
	if err := os.MkdirAll(r.l.KMSDir(), 0o700); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.KMSDir(), err)
	}
	cfg := kmsPluginConfig(r.l.KMSSocket(), r.st.MockKP, port)
	// 0600: it holds mockkp's API key.
	if err := atomicfile.Write(r.l.KMSConfig(), []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("failed to write the KMS plug-in's config: %w", err)
	}
	p.Path = filepath.Join(r.opts.BinDir, "keysync-kms-plugin")
	// The runbook's way to name the file: $config_file.
	p.Env = append(os.Environ(), "config_file="+r.l.KMSConfig())
	// The lab's mockkp serves plain HTTP on loopback with its own token endpoint.
	p.Args = []string{"--allow-insecure-kp"}
	p.Fingerprint = fingerprint(append([]string{p.Path, cfg}, p.Args...)...)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	return note + ", " + r.l.KMSSocket(), nil
}

// writeEncryptionConfig writes kube-apiserver's EncryptionConfiguration and returns it.
func (r *runner) writeEncryptionConfig() (string, error) {
	cfg := encryptionConfig(r.l.KMSSocket())
	if err := atomicfile.Write(r.l.EncryptionConfig(), []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("failed to write the encryption config: %w", err)
	}
	return cfg, nil
}

// encryptSecrets rewrites every Secret once per encryption config (state.SecretsEncryptedFor
// records its fingerprint), so Secrets written before the plug-in was enabled are encrypted.
func (r *runner) encryptSecrets(ctx context.Context) (string, error) {
	want := fingerprint(encryptionConfig(r.l.KMSSocket()))
	if r.st.SecretsEncryptedFor == want {
		return "reused: rewritten for this encryption config before", nil
	}
	data, err := r.kubeconfig()
	if err != nil {
		return "", err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return "", fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("failed to create a Kubernetes client: %w", err)
	}
	n, err := lab.RewriteSecrets(ctx, client)
	if err != nil {
		return "", err
	}
	r.st.SecretsEncryptedFor = want
	if err := r.saveState(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d Secrets rewritten", n), nil
}
