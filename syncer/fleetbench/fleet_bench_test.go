package fleetbench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/kubetest"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	"github.com/keysync-dev/keysync/syncer/secretkeys"
)

var (
	fleetSize  = flag.Int("fleet-size", 1000, "synchronizers in the fleet benchmark")
	unwrapRate = flag.Float64("unwrap-rate", 100, "mockkp's unwrap rate limit per second in the fleet benchmark")
)

// Goals of the issue: the fleet converges within fleetGoal at 100 unwraps/s.
const (
	fleetGoal       = 12 * time.Second
	convergeTimeout = 10 * time.Minute
)

// BenchmarkFleetKPKey: a fleet of synchronizers reacts to one new kp-key Secret while mockkp
// allows -unwrap-rate unwraps per second. Reports the time from the create to the last node's
// key file (converge-s), unwrap requests Key Protect saw (unwrap-calls, 429s included), the
// 429s its rate limit served (429s), the syncers' own unwrap results after the client's
// retries (transient-failures, permanent-failures), the API server's Secret watches
// (watches, from apiserver_longrunning_requests) and the process heap (heap-MiB). It fails
// when a node gave up (a permanent unwrap failure), removed a key file, or wrote a wrong one;
// it reports (never fails on) a convergence slower than the goal, since the figure is the
// point.
func BenchmarkFleetKPKey(b *testing.B) {
	n := *fleetSize
	kube := kubetest.StartT(b)
	admin, err := kube.Client()
	if err != nil {
		b.Fatal(err)
	}
	kp := mockkptest.Start(b, mockkptest.WithOptions(func(o *mockkp.Options) {
		o.RateLimits = []mockkp.RateLimit{{Op: mockkp.OpUnwrap, Rate: *unwrapRate}}
	}))
	ctx := b.Context()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: names.Namespace}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	cfg, err := json.Marshal(kp.Config())
	if err != nil {
		b.Fatal(err)
	}
	createSecret(b, admin, names.KPConfigSecret, corev1.SecretTypeOpaque, map[string][]byte{names.KPConfigKey: cfg})

	startAt := time.Now()
	f := startFleet(b, kube, n)
	b.Logf("%d synchronizers ready in %s", n, time.Since(startAt).Round(time.Millisecond))
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap := float64(ms.HeapInuse) / (1 << 20)
	watches := secretWatches(b, kube)

	pem := testkeys.PKCS8(b)
	want, _, err := secretkeys.Normalize(pem)
	if err != nil {
		b.Fatal(err)
	}
	ct := kp.Ciphertext(b, pem)
	version := 0
	var converge time.Duration
	var calls, limited int64
	for b.Loop() {
		version++
		name := fmt.Sprintf("fleet-kp-%d", version)
		kp.Server.ResetCounters()
		f.resetCounts()
		start := time.Now()
		createSecret(b, admin, name, corev1.SecretType(names.SecretTypeKPKey),
			map[string][]byte{kpkey.RootKeyIDKey: []byte(kp.RootKeyID), kpkey.CiphertextKey: []byte(ct)})
		converge = f.waitConverged(b, name, want, start)
		calls = kp.Server.Requests(mockkp.OpUnwrap)
		limited = kp.Server.Requests(mockkp.RateLimitedCounter(mockkp.OpUnwrap))
	}
	transient, permanent, removals := f.unwrapResults()
	b.ReportMetric(converge.Seconds(), "converge-s")
	b.ReportMetric(float64(calls), "unwrap-calls")
	b.ReportMetric(float64(limited), "429s")
	b.ReportMetric(transient, "transient-failures")
	b.ReportMetric(permanent, "permanent-failures")
	b.ReportMetric(float64(watches), "watches")
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(0, "ns/op") // one convergence per run: the time is converge-s
	if permanent > 0 || removals > 0 {
		b.Errorf("%v permanent unwrap failures and %v key file removals in the fleet, want none", permanent, removals)
	}
	if converge > fleetGoal {
		b.Logf("converged in %s at %g unwraps/s: above the goal of %s", converge.Round(time.Millisecond), *unwrapRate, fleetGoal)
	}
}

// node is one synchronizer of the fleet.
type node struct {
	name    string
	store   *keyfile.Store
	metrics *metrics.Metrics
	ctrl    *controller.Controller
	events  *eventCounter
}

type fleet struct {
	nodes []*node
	wg    sync.WaitGroup
}

// startFleet starts n synchronizers and waits until every one is ready. Each has its own keys
// and staging directories, node name, API server connection (as on separate nodes), Key
// Protect client and metrics; Events are counted in memory rather than sent to the API server.
func startFleet(b *testing.B, kube *kubetest.Server, n int) *fleet {
	b.Helper()
	root := b.TempDir()
	f := &fleet{}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		cancel()
		f.wg.Wait()
		for _, nd := range f.nodes {
			nd.store.Close()
		}
	})
	errc := make(chan error, n)
	for i := range n {
		nd := &node{name: fmt.Sprintf("node-%04d", i), metrics: metrics.New(), events: &eventCounter{}}
		dir := filepath.Join(root, nd.name)
		var err error
		nd.store, err = keyfile.Open(keyfile.Options{Dir: filepath.Join(dir, "keys", names.SyncSubdir), StagingDir: filepath.Join(dir, ".keysync-staging")})
		if err != nil {
			b.Fatalf("%s: failed to open keys directory: %v", nd.name, err)
		}
		rc := kube.RESTConfig()
		rc.QPS, rc.Burst = 5, 10              // client-go's defaults, as the syncer uses them
		rc.Dial = (&net.Dialer{}).DialContext // its own connection: no transport shared between nodes
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			b.Fatal(err)
		}
		nd.ctrl, err = controller.New(controller.Options{Client: client,
			Reconciler: controller.ReconcilerOptions{Namespace: names.Namespace, NodeName: nd.name, Store: nd.store,
				Metrics: nd.metrics, Events: nd.events, AllowInsecureKP: true}}) // mockkp: plain HTTP on loopback
		if err != nil {
			b.Fatal(err)
		}
		f.nodes = append(f.nodes, nd)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := nd.ctrl.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", nd.name, err)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case err := <-errc:
			b.Fatalf("a synchronizer stopped: %v", err)
		default:
		}
		ready := 0
		for _, nd := range f.nodes {
			if nd.ctrl.Ready() {
				ready++
			}
		}
		if ready == n {
			return f
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d synchronizers ready after 5m", ready, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitConverged waits until every node has Secret name's key file with content want and
// returns the time from start to the last one.
func (f *fleet) waitConverged(b *testing.B, name string, want []byte, start time.Time) time.Duration {
	b.Helper()
	file := keyfile.Name(names.Namespace, name, secretkeys.KPKeyDataKey)
	pending := slices.Clone(f.nodes)
	var last time.Duration
	for len(pending) > 0 {
		now := time.Since(start)
		pending = slices.DeleteFunc(pending, func(nd *node) bool {
			data, err := os.ReadFile(filepath.Join(nd.store.Dir(), file))
			if err != nil {
				return false
			}
			if string(data) != string(want) {
				b.Fatalf("%s: key file of %s differs from the wrapped key", nd.name, name)
			}
			last = now
			return true
		})
		if now > convergeTimeout {
			b.Fatalf("%d of %d nodes have no key file for %s after %s", len(pending), len(f.nodes), name, convergeTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last
}

// unwrapResults sums the fleet's unwrap failures after the client's own retries and its key
// file removals.
func (f *fleet) unwrapResults() (transient, permanent, removals float64) {
	for _, nd := range f.nodes {
		transient += testutil.ToFloat64(nd.metrics.UnwrapCalls.WithLabelValues("transient"))
		permanent += testutil.ToFloat64(nd.metrics.UnwrapCalls.WithLabelValues("permanent"))
		removals += testutil.ToFloat64(nd.metrics.FileRemovals)
	}
	return transient, permanent, removals
}

func (f *fleet) resetCounts() {
	for _, nd := range f.nodes {
		nd.metrics.UnwrapCalls.Reset()
	}
}

// eventCounter is an in-memory EventSink: a fleet of 1,000 broadcasters would measure the
// API server's Event handling rather than the synchronizers.
type eventCounter struct {
	mu       sync.Mutex
	byReason map[string]int
}

func (e *eventCounter) Event(_ k8sruntime.Object, _, reason, _ string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byReason == nil {
		e.byReason = map[string]int{}
	}
	e.byReason[reason]++
}

func createSecret(b *testing.B, c kubernetes.Interface, name string, typ corev1.SecretType, data map[string][]byte) {
	b.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: names.Namespace}, Type: typ, Data: data}
	if _, err := c.CoreV1().Secrets(names.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		b.Fatalf("failed to create Secret %s: %v", name, err)
	}
}

// secretWatches reads the API server's count of open Secret watches from its metrics.
func secretWatches(b *testing.B, kube *kubetest.Server) int {
	b.Helper()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, kube.URL+"/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+kube.Token)
	hc, err := rest.HTTPClientFor(kube.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatalf("failed to read kube-apiserver metrics: %v", err)
	}
	defer resp.Body.Close()
	n, err := parseSecretWatches(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// parseSecretWatches sums apiserver_longrunning_requests{verb="WATCH",resource="secrets"} of a
// Prometheus text exposition.
func parseSecretWatches(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	total, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") ||
			!strings.Contains(line, `verb="WATCH"`) || !strings.Contains(line, `resource="secrets"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse metric line %q: %w", line, err)
		}
		total += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("failed to read metrics: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("no apiserver_longrunning_requests sample for Secret watches in the metrics")
	}
	return int(total), nil
}
