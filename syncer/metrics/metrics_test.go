package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/syncer/metrics"
)

func TestHandlerExposesEveryMetric(t *testing.T) {
	m := metrics.New()
	m.Errors.WithLabelValues("not-private-key").Inc()
	m.UnwrapCalls.WithLabelValues("ok").Add(2)
	m.KeysOnDisk.Set(3)
	m.SyncLatency.Observe(0.02)
	m.LastSync.SetToCurrentTime()
	m.FileWrites.Inc()
	m.FileRemovals.Inc()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`keysync_syncer_errors_total{reason="not-private-key"} 1`,
		`keysync_syncer_unwrap_calls_total{result="ok"} 2`,
		`keysync_syncer_keys_on_disk 3`,
		`keysync_syncer_secret_to_file_seconds_bucket{le="0.025"} 1`,
		`keysync_syncer_last_sync_timestamp_seconds `,
		`keysync_syncer_file_writes_total 1`,
		`keysync_syncer_file_removals_total 1`,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two instances do not share state (no global registry).
	if strings.Contains(scrape(t, metrics.New()), `keysync_syncer_keys_on_disk 3`) {
		t.Errorf("a fresh Metrics sees another instance's values")
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
