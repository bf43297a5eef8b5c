package mockkp

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimit is a token-bucket limit on the requests of one operation, as Key Protect limits the
// requests of each instance. Beyond it the server answers 429 with a Retry-After header and the
// service's error body (TOO_MANY_REQUESTS_ERR; the IAM error body for op "token").
//
// Each Key Protect instance (bluemix-instance header) has its own bucket; token requests share
// one. The bucket starts full and refills by the server's clock (Options.Now).
type RateLimit struct {
	Op string `json:"op"`
	// Rate is the sustained number of requests per second (> 0).
	Rate float64 `json:"rate"`
	// Burst is the bucket size; 0 means Rate rounded up (at least 1).
	Burst int `json:"burst,omitempty"`
	// RetryAfter, when set, is the Retry-After of every 429 (rounded up to whole seconds);
	// by default it is the time until the next token, rounded up to whole seconds, at least 1.
	RetryAfter Duration `json:"retryAfter,omitempty"`
}

// Limits of RateLimit's fields.
const (
	maxRate       = 1e6
	maxRetryAfter = time.Hour
)

// RateLimitedCounter names the counter (Counters, Requests, GET /counters) of the 429s the rate
// limit of op served: "ratelimited.<op>". Injected faults are not counted there.
func RateLimitedCounter(op string) string { return "ratelimited." + op }

// Validate checks the op and the parameters.
func (l RateLimit) Validate() error {
	if !slices.Contains(Ops(), l.Op) {
		return fmt.Errorf("unknown op %q (want one of %s)", l.Op, strings.Join(Ops(), ", "))
	}
	if math.IsNaN(l.Rate) || l.Rate <= 0 || l.Rate > maxRate {
		return fmt.Errorf("rate must be above 0 and at most %g requests per second", float64(maxRate))
	}
	if l.Burst < 0 || l.Burst > maxRate {
		return fmt.Errorf("burst must be between 0 and %g", float64(maxRate))
	}
	if l.RetryAfter < 0 || time.Duration(l.RetryAfter) > maxRetryAfter {
		return fmt.Errorf("retryAfter must be between 0 and %s", maxRetryAfter)
	}
	return nil
}

func (l RateLimit) burst() float64 {
	if l.Burst > 0 {
		return float64(l.Burst)
	}
	return max(1, math.Ceil(l.Rate))
}

// ParseRateLimit reads the --rate-limit flag's value: OP=RATE[:BURST], e.g. "unwrap=100" or
// "unwrap=100:20" (RATE requests per second, a bucket of BURST).
func ParseRateLimit(s string) (RateLimit, error) {
	op, spec, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return RateLimit{}, fmt.Errorf("invalid rate limit %q: want OP=RATE[:BURST], e.g. unwrap=100", s)
	}
	l := RateLimit{Op: op}
	rate, burst, hasBurst := strings.Cut(spec, ":")
	var err error
	if l.Rate, err = strconv.ParseFloat(rate, 64); err != nil {
		return RateLimit{}, fmt.Errorf("invalid rate limit %q: rate %q is not a number", s, rate)
	}
	if hasBurst {
		if l.Burst, err = strconv.Atoi(burst); err != nil || l.Burst < 1 {
			return RateLimit{}, fmt.Errorf("invalid rate limit %q: burst %q is not a positive integer", s, burst)
		}
	}
	if err := l.Validate(); err != nil {
		return RateLimit{}, fmt.Errorf("invalid rate limit %q: %w", s, err)
	}
	return l, nil
}

// rateLimiter holds the limits and their buckets.
type rateLimiter struct {
	mu     sync.Mutex
	limits map[string]RateLimit
	// buckets: op → instance id ("" for token requests) → bucket.
	buckets map[string]map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{limits: map[string]RateLimit{}, buckets: map[string]map[string]*bucket{}}
}

// take takes a token for a request of op on instance at now; when none is left it returns
// false and the Retry-After to announce.
func (rl *rateLimiter) take(op, instance string, now time.Time) (bool, time.Duration) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	l, ok := rl.limits[op]
	if !ok {
		return true, 0
	}
	byInst := rl.buckets[op]
	if byInst == nil {
		byInst = map[string]*bucket{}
		rl.buckets[op] = byInst
	}
	b := byInst[instance]
	if b == nil {
		b = &bucket{tokens: l.burst(), last: now}
		byInst[instance] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst(), b.tokens+elapsed.Seconds()*l.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(l.RetryAfter)
	if wait == 0 {
		wait = time.Duration((1 - b.tokens) / l.Rate * float64(time.Second))
	}
	return false, retryAfterSeconds(wait)
}

// retryAfterSeconds rounds d up to whole seconds, at least 1 (Retry-After counts seconds).
func retryAfterSeconds(d time.Duration) time.Duration {
	return max(time.Second, time.Duration(math.Ceil(d.Seconds()))*time.Second)
}

// SetRateLimit sets (or replaces) the rate limit of l.Op, with full buckets.
func (s *Server) SetRateLimit(l RateLimit) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("invalid rate limit: %w", err)
	}
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	s.limiter.limits[l.Op] = l
	delete(s.limiter.buckets, l.Op)
	return nil
}

// RemoveRateLimit removes the rate limit of op, if any.
func (s *Server) RemoveRateLimit(op string) {
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	delete(s.limiter.limits, op)
	delete(s.limiter.buckets, op)
}

// ClearRateLimits removes every rate limit.
func (s *Server) ClearRateLimits() {
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	clear(s.limiter.limits)
	clear(s.limiter.buckets)
}

// RateLimits lists the rate limits, by op.
func (s *Server) RateLimits() []RateLimit {
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	out := make([]RateLimit, 0, len(s.limiter.limits))
	for _, l := range s.limiter.limits {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b RateLimit) int { return strings.Compare(a.Op, b.Op) })
	return out
}

// rateLimited answers 429 and reports true when the request of op is beyond its rate limit.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, op string, iam bool) bool {
	instance := ""
	if !iam {
		instance = r.Header.Get("bluemix-instance")
	}
	ok, retryAfter := s.limiter.take(op, instance, s.now())
	if ok {
		return false
	}
	s.counters[RateLimitedCounter(op)].Add(1)
	w.Header().Set("Retry-After", strconv.FormatInt(int64(retryAfter/time.Second), 10))
	if iam {
		writeIAMError(w, http.StatusTooManyRequests, IAMCodeUnavailable, "Too many requests; retry after the Retry-After delay.")
		return true
	}
	writeKPError(w, errf(http.StatusTooManyRequests, CodeTooManyRequests,
		"the rate limit of this operation for the instance was exceeded; retry after the Retry-After delay"))
	return true
}

// addRateLimitRoutes serves the admin API's rate-limit routes (see AdminHandler).
func (s *Server) addRateLimitRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /ratelimits", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.RateLimits())
	})
	mux.HandleFunc("POST /ratelimits", func(w http.ResponseWriter, r *http.Request) {
		var l RateLimit
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "failed to decode rate limit: " + err.Error()})
			return
		}
		if l.Rate == 0 && l.Burst == 0 && l.RetryAfter == 0 && slices.Contains(Ops(), l.Op) {
			s.RemoveRateLimit(l.Op)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if err := s.SetRateLimit(l); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, l)
	})
	mux.HandleFunc("DELETE /ratelimits", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearRateLimits()
		w.WriteHeader(http.StatusNoContent)
	})
}
