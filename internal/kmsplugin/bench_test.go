package kmsplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/kubetest"
)

// startAPIServer starts etcd + kube-apiserver (internal/kubetest) with extra flags.
func startAPIServer(b *testing.B, args ...string) kubernetes.Interface {
	b.Helper()
	if os.Getenv(kubetest.EnvBinDir) == "" {
		b.Fatalf("%s is not set: run `make bench`, which builds kube-apiserver and etcd and sets it", kubetest.EnvBinDir)
	}
	s, err := kubetest.Start(b.Context(), kubetest.Options{Dir: b.TempDir(), ExtraAPIServerArgs: args})
	if err != nil {
		b.Fatalf("failed to start kube-apiserver: %v", err)
	}
	b.Cleanup(s.Stop)
	cfg := s.RESTConfig()
	cfg.QPS = -1 // no client-side rate limit: measure the server
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// writeSecrets creates n Secrets of 1 KiB with `workers` concurrent writers and returns the
// elapsed time.
func writeSecrets(b *testing.B, c kubernetes.Interface, prefix string, n, workers int) time.Duration {
	b.Helper()
	data := map[string][]byte{"key.pem": make([]byte, 1024)}
	jobs := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i)}, Data: data}
				if _, err := c.CoreV1().Secrets("default").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case jobs <- i:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			b.Fatalf("failed to create Secret %s-%05d: %v", prefix, i, err)
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("failed to create a Secret: %v", err)
	default:
	}
	return time.Since(start)
}

// BenchmarkSecretWrites: Secret writes per second through two kube-apiservers started side by
// side in one run, one encrypting Secrets with this plug-in (KMS v2 against mockkp over the
// official client, through the gRPC socket), one with the identity provider; rounds of writes
// alternate between them so background load hits both alike. Reports both rates, their ratio
// (goal >= 0.9: KMS v2 derives a DEK per write from a seed it wrapped once) and the Key
// Protect calls (IAM tokens included) per 1,000 encrypted writes.
func BenchmarkSecretWrites(b *testing.B) {
	const rounds, perRound, workers = 10, 200, 8
	p := startPlugin(b, map[string]string{"LOG_LEVEL": "warn"})
	encCfg := filepath.Join(b.TempDir(), "encryption-config.yaml")
	writeFile(b, filepath.Dir(encCfg), filepath.Base(encCfg), `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: keysync-kp
          endpoint: unix://`+p.socket+`
          timeout: 3s
      - identity: {}
`, 0o600)
	kms := startAPIServer(b, "--encryption-provider-config="+encCfg)
	identity := startAPIServer(b)
	// Warm both up (connections, the KMS DEK seed) outside the measurement.
	writeSecrets(b, kms, "warm", 20, workers)
	writeSecrets(b, identity, "warm", 20, workers)

	var tKMS, tIdentity time.Duration
	var calls int64
	writes := 0
	for b.Loop() {
		before := sum(p.kp.Server.Counters())
		for r := range rounds {
			prefix := fmt.Sprintf("b%d-r%d", writes, r)
			tIdentity += writeSecrets(b, identity, prefix, perRound, workers)
			tKMS += writeSecrets(b, kms, prefix, perRound, workers)
		}
		calls += sum(p.kp.Server.Counters()) - before
		writes += rounds * perRound
	}
	idRate := float64(writes) / tIdentity.Seconds()
	kmsRate := float64(writes) / tKMS.Seconds()
	b.ReportMetric(idRate, "identity-writes/s")
	b.ReportMetric(kmsRate, "kms-writes/s")
	b.ReportMetric(kmsRate/idRate, "kms/identity")
	b.ReportMetric(float64(calls)*1000/float64(writes), "kp-calls/1000-writes")
	// Since the plug-in started: kube-apiserver's start (Status, the first DEK seed's wrap),
	// the warm-up writes and the measured ones.
	b.ReportMetric(float64(sum(p.kp.Server.Counters())), "kp-calls-total")
	b.Logf("%d writes each: identity %.0f/s, kms %.0f/s, ratio %.2f; Key Protect calls during the measured writes: %d; since the plug-in started: %v",
		writes, idRate, kmsRate, kmsRate/idRate, calls, p.kp.Server.Counters())
}

// sum adds mockkp's per-operation request counters (IAM tokens included).
func sum(counters map[string]int64) int64 {
	var n int64
	for _, c := range counters {
		n += c
	}
	return n
}
