package controller

import (
	"math/rand/v2"
	"sync"
	"time"
)

// RetryPolicy is the backoff between the sync attempts of one Secret after a transient
// failure (an unwrap outage, a failed write):
//
//	exp(n)  = min(Max, Base·2^(n-1))                 n = failures in a row
//	delay   = exp(n)/2 + random[0, exp(n)/2)          "equal jitter": growing, never in step
//	with a Retry-After r from IAM or Key Protect:
//	delay   = r + random[0, min(r, exp(n))/2)         never sooner than r, spread over a window
//
// The jitter keeps a fleet of nodes that failed together (a Key Protect rate limit, an IAM
// outage) from retrying together; the Retry-After window keeps nodes told "come back in r"
// from all coming back at r. Retry-After is capped at MaxRetryAfter. A success resets n.
type RetryPolicy struct {
	Base, Max time.Duration
	// MaxRetryAfter bounds an honoured Retry-After (default 1h).
	MaxRetryAfter time.Duration
	// Rand returns a number in [0, 1); default math/rand/v2. Tests pin it.
	Rand func() float64
}

// DefaultRetryPolicy is the synchronizer's default: 1s doubling to 5m.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Base: time.Second, Max: 5 * time.Minute, MaxRetryAfter: time.Hour}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.Base <= 0 {
		p.Base = d.Base
	}
	if p.Max < p.Base {
		p.Max = max(d.Max, p.Base)
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Delay is the wait before the next attempt after failures (>= 1) failures in a row, the
// last with Retry-After retryAfter (0 when none).
func (p RetryPolicy) Delay(failures int, retryAfter time.Duration) time.Duration {
	p = p.withDefaults()
	exp := p.Max
	if failures < 1 {
		failures = 1
	}
	if failures <= 40 {
		if d := p.Base << (failures - 1); d > 0 && d < p.Max {
			exp = d
		}
	}
	if retryAfter > 0 {
		r := min(retryAfter, p.MaxRetryAfter)
		return r + time.Duration(p.Rand()*float64(min(r, exp))/2)
	}
	return exp/2 + time.Duration(p.Rand()*float64(exp)/2)
}

// retryState counts failures per Secret and turns them into delays with a RetryPolicy.
type retryState struct {
	policy   RetryPolicy
	mu       sync.Mutex
	failures map[string]int
}

func newRetryState(p RetryPolicy) *retryState {
	return &retryState{policy: p.withDefaults(), failures: map[string]int{}}
}

// fail records a failure of item and returns the delay before its next attempt.
func (r *retryState) fail(item string, retryAfter time.Duration) time.Duration {
	r.mu.Lock()
	r.failures[item]++
	n := r.failures[item]
	r.mu.Unlock()
	return r.policy.Delay(n, retryAfter)
}

func (r *retryState) forget(item string) {
	r.mu.Lock()
	delete(r.failures, item)
	r.mu.Unlock()
}

func (r *retryState) count(item string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures[item]
}
