package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkSecretToFile: one Secret created through the API server → its key file in the
// tree, as the syncer process sees it through its informer. Goal: p99 <= 1 s.
func BenchmarkSecretToFile(b *testing.B) {
	e := newEnv(b)
	e.bin = buildSyncer(b)
	c := e.start(b)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		key := testkeys.PKCS8(b)
		name := fmt.Sprintf("lat-%d", i)
		file := filepath.Join(e.keys, keyfile.Name(ns, name, "k"))
		i++
		b.StartTimer()
		start := time.Now()
		e.put(b, name, typeKey, map[string][]byte{"k": key})
		for {
			if _, err := os.Stat(file); err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("file of %s not written after 30s", name)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	c.stop()
}

// createSecrets creates n key Secrets through the API server, 8 at a time.
func createSecrets(b *testing.B, e *env, n int) {
	var wg sync.WaitGroup
	ch := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				e.put(b, fmt.Sprintf("key-%04d", i), typeKey, map[string][]byte{"key.pem": testkeys.PKCS8(b)})
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

// BenchmarkFullResync1000: restart the syncer on a node that already holds the files of 1,000
// key Secrets: process start → /readyz (the full resync is done). Reports the resync time
// (goal <= 2 s), files rewritten (goal 0) and the process's RSS with 1,000 Secrets in its
// informer cache (VmRSS, goal <= 40 MiB).
func BenchmarkFullResync1000(b *testing.B) {
	const n = 1000
	e := newEnv(b)
	e.bin = buildSyncer(b) // measure the shipped binary, not this test binary
	createSecrets(b, e, n)
	c := e.start(b)
	waitFor(b, 120*time.Second, "1000 files", func() bool { return len(tree(b, e.keys)) == n })
	c.stop()
	inodes := map[string]uint64{}
	for f := range tree(b, e.keys) {
		inodes[f] = ino(b, filepath.Join(e.keys, f))
	}
	var total time.Duration
	var rss, rewrites float64
	runs := 0
	for b.Loop() {
		start := time.Now()
		c := e.start(b)
		total += time.Since(start)
		runs++
		rss = max(rss, c.rss())
		rewrites += c.metric("keysync_syncer_file_writes_total")
		b.StopTimer()
		c.stop()
		b.StartTimer()
	}
	for f, i := range inodes {
		if ino(b, filepath.Join(e.keys, f)) != i {
			rewrites++
		}
	}
	b.ReportMetric(total.Seconds()/float64(runs), "resync-s")
	b.ReportMetric(rewrites, "rewrites")
	b.ReportMetric(rss/(1<<20), "RSS-MiB")
}

// BenchmarkUnwrapCalls100x10: 100 kp-key Secrets, then 10 full resyncs (process restarts,
// which lose every in-memory cache): Key Protect sees exactly one unwrap per Secret.
func BenchmarkUnwrapCalls100x10(b *testing.B) {
	const n, resyncs = 100, 10
	for b.Loop() {
		b.StopTimer()
		e := newEnv(b)
		e.configSecret(b)
		for i := range n {
			e.put(b, fmt.Sprintf("kp-%03d", i), typeKP, kpData(e, b, testkeys.PKCS8(b)))
		}
		before := e.kp.Server.Requests(mockkp.OpUnwrap)
		b.StartTimer()
		for r := range resyncs {
			c := e.start(b)
			if r == 0 {
				waitFor(b, 60*time.Second, "100 kp-key files", func() bool { return len(tree(b, e.keys)) == n })
			}
			c.stop()
		}
		b.StopTimer()
		calls := e.kp.Server.Requests(mockkp.OpUnwrap) - before
		if calls != n {
			b.Errorf("unwrap calls %d for %d kp-key Secrets over %d resyncs, want %d", calls, n, resyncs, n)
		}
		b.ReportMetric(float64(calls), "unwrap-calls")
		b.StartTimer()
	}
}
