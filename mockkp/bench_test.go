package mockkp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"

	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// BenchmarkUnwrap measures unwraps per second and latency percentiles of the official client
// against mockkp on loopback, with the client's DefaultTransport (keep-alives disabled: a new
// TCP connection per request) and with a keep-alive transport.
//
//	go test -run '^$' -bench BenchmarkUnwrap -benchtime 5s ./mockkp/
func BenchmarkUnwrap(b *testing.B) {
	transports := []struct {
		name string
		rt   func() http.RoundTripper
	}{
		{"default-transport", kp.DefaultTransport},
		{"keepalive-transport", func() http.RoundTripper {
			return &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
		}},
	}
	// A kp-key plaintext: base64 of a PEM the size of an RSA-2048 PKCS#8 key.
	plain := []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 1704)))
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			env := mockkptest.Start(b)
			c := env.Client(b, tr.rt())
			ct, err := c.Wrap(b.Context(), env.RootKeyID, plain, nil)
			if err != nil {
				b.Fatalf("Wrap: %v", err)
			}
			var (
				mu  sync.Mutex
				all []time.Duration
			)
			b.SetParallelism(4)
			b.ResetTimer()
			cpu0 := cpuTime(b)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				lat := make([]time.Duration, 0, 1024)
				for pb.Next() {
					t0 := time.Now()
					got, err := c.Unwrap(b.Context(), env.RootKeyID, ct, nil)
					lat = append(lat, time.Since(t0))
					if err != nil || !bytes.Equal(got, plain) {
						b.Errorf("Unwrap: %v", err)
						return
					}
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			if len(all) == 0 {
				return
			}
			slices.Sort(all)
			pct := func(p float64) float64 {
				return float64(all[int(float64(len(all)-1)*p)]) / float64(time.Millisecond)
			}
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "unwraps/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			// CPU (client + server, user + system) per unwrap: on a shared machine the
			// throughput follows the CPU share it gets; 2 cores / this = the 2-core capacity.
			b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(len(all)), "cpu-µs/unwrap")
		})
	}
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUnwrapHandler measures mockkp's own cost per unwrap (token check, AES-GCM, JSON),
// calling the handler in memory without a network or the client.
func BenchmarkUnwrapHandler(b *testing.B) {
	env := mockkptest.Start(b)
	c := env.Client(b, nil)
	plain := []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 1704)))
	ct, err := c.Wrap(b.Context(), env.RootKeyID, plain, nil)
	if err != nil {
		b.Fatalf("Wrap: %v", err)
	}
	resp, err := http.PostForm(env.TokenURL, map[string][]string{
		"grant_type": {"urn:ibm:params:oauth:grant-type:apikey"}, "apikey": {env.APIKey}})
	if err != nil {
		b.Fatalf("token: %v", err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil {
		b.Fatalf("token: %v", err)
	}
	body := `{"ciphertext":"` + string(ct) + `"}`
	h := env.Server.Handler()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/v2/keys/"+env.RootKeyID+"/actions/unwrap", strings.NewReader(body))
			req.Header.Set("authorization", "Bearer "+tok.AccessToken)
			req.Header.Set("bluemix-instance", env.InstanceID)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("unwrap = %d", rec.Code)
				return
			}
		}
	})
}
