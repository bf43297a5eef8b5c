// Package metrics holds the synchronizer's Prometheus metrics on their own registry (no
// global state). Labels carry reasons and results, never names or key material.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const ns = "keysync_syncer"

// Metrics are the synchronizer's metrics.
type Metrics struct {
	Registry *prometheus.Registry
	// KeysOnDisk is the number of key files the synchronizer owns in the keys tree.
	KeysOnDisk prometheus.Gauge
	// Errors counts rejected keys and failed operations by reason.
	Errors *prometheus.CounterVec
	// UnwrapCalls counts Key Protect unwrap calls by result (ok, transient, permanent).
	UnwrapCalls *prometheus.CounterVec
	// FileWrites counts files written or replaced in the keys tree (unchanged files are not).
	FileWrites prometheus.Counter
	// FileRemovals counts files removed from the keys tree.
	FileRemovals prometheus.Counter
	// LastSync is the Unix time of the last completed full sync.
	LastSync prometheus.Gauge
	// SyncLatency is the time from a Secret change being observed to its file being in place.
	SyncLatency prometheus.Histogram
}

// New registers the metrics (and the Go/process collectors) on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		KeysOnDisk: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "keys_on_disk",
			Help: "Key files the synchronizer owns in the keys directory."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
			Help: "Rejected keys and failed operations, by reason."}, []string{"reason"}),
		UnwrapCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "unwrap_calls_total",
			Help: "Key Protect unwrap calls, by result."}, []string{"result"}),
		FileWrites: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "file_writes_total",
			Help: "Key files written or replaced (unchanged files are never rewritten)."}),
		FileRemovals: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "file_removals_total",
			Help: "Key files removed."}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_sync_timestamp_seconds",
			Help: "Unix time of the last completed full sync."}),
		SyncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "secret_to_file_seconds",
			Help:    "Time from a Secret change being observed to its key file being in place.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	m.Registry.MustRegister(m.KeysOnDisk, m.Errors, m.UnwrapCalls, m.FileWrites, m.FileRemovals,
		m.LastSync, m.SyncLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
