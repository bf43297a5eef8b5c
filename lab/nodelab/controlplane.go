package nodelab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// The control plane is two lab processes, etcd and kube-apiserver, from K8sBinDir. Their
// inputs stay in the control-plane dir across ups: etcd's data, kube-apiserver's serving
// certificate, the service-account key pair and the admin token, so a restarted process
// serves the same cluster to the same kubeconfig.

func (r *runner) startEtcd(ctx context.Context) (string, error) {
	p := r.process(componentNamed("etcd"))
	_, ours := p.Running()
	client, err := r.port(&r.st.Etcd, ours)
	if err != nil {
		return "", err
	}
	peer, err := r.port(&r.st.EtcdPeer, ours)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(r.l.EtcdDataDir(), 0o700); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", r.l.EtcdDataDir(), err)
	}
	clientURL, peerURL := "http://"+client, "http://"+peer
	p.Path = filepath.Join(r.opts.K8sBinDir, "etcd")
	p.Args = []string{"--name=default", "--data-dir=" + r.l.EtcdDataDir(),
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL, "--unsafe-no-fsync", "--log-level=warn"}
	return ensure(ctx, p)
}

func (r *runner) startAPIServer(ctx context.Context) (string, error) {
	if err := r.ensureCredentials(); err != nil {
		return "", err
	}
	p := r.process(componentNamed("kube-apiserver"))
	_, ours := p.Running()
	addr, err := r.port(&r.st.APIServer, ours)
	if err != nil {
		return "", err
	}
	_, port, _ := strings.Cut(addr, ":")
	encCfg, err := r.writeEncryptionConfig()
	if err != nil {
		return "", err
	}
	p.Path = filepath.Join(r.opts.K8sBinDir, "kube-apiserver")
	p.Args = []string{
		"--etcd-servers=http://" + r.st.Etcd,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + port,
		"--cert-dir=" + r.l.APIServerCertDir(),
		"--token-auth-file=" + r.l.TokenAuthFile(),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + r.l.SAPub(),
		"--service-account-signing-key-file=" + r.l.SAKey(),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--encryption-provider-config=" + r.l.EncryptionConfig(),
		"--v=1",
	}
	// The token and the encryption config are inputs too: new ones need a restart.
	p.Fingerprint = fingerprint(append([]string{p.Path, r.token, encCfg}, p.Args...)...)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	if err := r.writeKubeconfig(); err != nil {
		return "", err
	}
	if err := r.ensureNamespace(ctx, Namespace); err != nil {
		return "", err
	}
	return note + ", " + r.apiURL(), nil
}

// ensureCredentials creates the admin token and the service-account key pair unless they
// exist.
func (r *runner) ensureCredentials() error {
	if err := os.MkdirAll(r.l.APIServerCertDir(), 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", r.l.APIServerCertDir(), err)
	}
	if r.token == "" {
		tok := make([]byte, 16)
		if _, err := rand.Read(tok); err != nil {
			return fmt.Errorf("failed to generate the admin token: %w", err)
		}
		r.token = hex.EncodeToString(tok)
		if err := atomicfile.Write(r.l.TokenFile(), []byte(r.token+"\n"), 0o600); err != nil {
			return fmt.Errorf("failed to write the admin token: %w", err)
		}
	}
	if err := atomicfile.Write(r.l.TokenAuthFile(), []byte(r.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("failed to write kube-apiserver's token file: %w", err)
	}
	_, errKey := os.Stat(r.l.SAKey())
	_, errPub := os.Stat(r.l.SAPub())
	if errKey == nil && errPub == nil {
		return nil
	}
	return writeServiceAccountKeys(r.l.SAKey(), r.l.SAPub())
}

// writeServiceAccountKeys writes an ECDSA P-256 signing key pair for service-account tokens.
func writeServiceAccountKeys(keyPath, pubPath string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("failed to generate the service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("failed to encode the service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return fmt.Errorf("failed to encode the service-account public key: %w", err)
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("failed to write the service-account key: %w", err)
	}
	if err := atomicfile.Write(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return fmt.Errorf("failed to write the service-account public key: %w", err)
	}
	return nil
}

// kubeconfig is the lab's admin kubeconfig (the serving certificate is self-signed: not
// verified, loopback only).
func (r *runner) kubeconfig() ([]byte, error) {
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"node-lab": {Server: r.apiURL(), InsecureSkipTLSVerify: true}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {Token: r.token}},
		Contexts:       map[string]*clientcmdapi.Context{"node-lab": {Cluster: "node-lab", AuthInfo: "admin"}},
		CurrentContext: "node-lab",
	}
	data, err := clientcmd.Write(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the kubeconfig: %w", err)
	}
	return data, nil
}

func (r *runner) writeKubeconfig() error {
	data, err := r.kubeconfig()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.l.Kubeconfig(), data, 0o600); err != nil {
		return fmt.Errorf("failed to write the kubeconfig: %w", err)
	}
	return nil
}

// ensureNamespace creates ns unless it exists.
func (r *runner) ensureNamespace(ctx context.Context, ns string) error {
	data, err := r.kubeconfig()
	if err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("failed to create a Kubernetes client: %w", err)
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", ns, err)
	}
	return nil
}
