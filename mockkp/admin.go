package mockkp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what an injected fault does.
type FaultKind string

// Fault kinds.
const (
	// FaultLatency delays the request by Latency, then serves it normally.
	FaultLatency FaultKind = "latency"
	// FaultStatus answers with Status (429, 500, 503, ...) in the service's error envelope
	// (the IAM error body for op "token").
	FaultStatus FaultKind = "status"
	// FaultDrop closes the connection without an answer.
	FaultDrop FaultKind = "drop"
	// FaultHTML answers with Status and an HTML error page (text/html), as a load balancer or
	// gateway in front of IAM or Key Protect does during an outage.
	FaultHTML FaultKind = "html"
)

// AnyOp in Fault.Op matches every operation.
const AnyOp = "*"

// Fault affects the next Count requests of Op, or every request of Op for a while (For).
type Fault struct {
	Op      string    `json:"op"`
	Kind    FaultKind `json:"kind"`
	Status  int       `json:"status,omitempty"`
	Latency Duration  `json:"latency,omitempty"`
	// Count is how many requests the fault affects; 0 means 1 (unless For is set).
	Count int `json:"count,omitempty"`
	// For, when set, makes the fault affect every request of Op until For has passed (by the
	// server's clock, Options.Now) since it was added, instead of Count requests. Faults
	// lists the time left.
	For Duration `json:"for,omitempty"`
	// RetryAfter, for status and html faults, adds a Retry-After header (whole seconds,
	// rounded up).
	RetryAfter Duration `json:"retryAfter,omitempty"`
}

// maxFaultFor bounds Fault.For.
const maxFaultFor = 24 * time.Hour

// Duration is a time.Duration written as a Go duration string ("250ms") in JSON.
type Duration time.Duration

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("250ms") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("failed to parse duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("failed to parse duration: %w", err)
	}
	*d = Duration(n)
	return nil
}

// Validate checks the op, kind and parameters.
func (f Fault) Validate() error {
	if f.Op != AnyOp && !slices.Contains(Ops(), f.Op) {
		return fmt.Errorf("unknown op %q (want one of %s or %q)", f.Op, strings.Join(Ops(), ", "), AnyOp)
	}
	if f.Count < 0 {
		return fmt.Errorf("count must not be negative")
	}
	if f.For < 0 || time.Duration(f.For) > maxFaultFor {
		return fmt.Errorf("for must be between 0 and %s", maxFaultFor)
	}
	if f.For > 0 && f.Count > 0 {
		return fmt.Errorf("count and for exclude each other")
	}
	if f.RetryAfter < 0 || time.Duration(f.RetryAfter) > maxRetryAfter {
		return fmt.Errorf("retryAfter must be between 0 and %s", maxRetryAfter)
	}
	if f.RetryAfter > 0 && f.Kind != FaultStatus && f.Kind != FaultHTML {
		return fmt.Errorf("retryAfter goes with kinds status and html only")
	}
	switch f.Kind {
	case FaultLatency:
		if f.Latency <= 0 || time.Duration(f.Latency) > 10*time.Minute {
			return fmt.Errorf("latency must be between 0 and 10m")
		}
	case FaultStatus, FaultHTML:
		if f.Status < 400 || f.Status > 599 {
			return fmt.Errorf("status must be 400 to 599")
		}
	case FaultDrop:
	default:
		return fmt.Errorf("unknown kind %q (want latency, status, html or drop)", f.Kind)
	}
	if f.RetryAfter < 0 || (f.RetryAfter > 0 && f.Kind != FaultStatus && f.Kind != FaultHTML) {
		return fmt.Errorf("retryAfter needs a status or html fault and must not be negative")
	}
	return nil
}

type pendingFault struct {
	Fault
	Remaining int `json:"remaining"`
	// until, when set (Fault.For), ends the fault instead of Remaining.
	until time.Time
}

func (f *pendingFault) expired(now time.Time) bool {
	return !f.until.IsZero() && !now.Before(f.until)
}

// AddFault queues f; faults of one op apply in the order they were added.
func (s *Server) AddFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("invalid fault: %w", err)
	}
	n := f.Count
	if n == 0 {
		n = 1
	}
	p := &pendingFault{Fault: f, Remaining: n}
	if f.For > 0 {
		p.until = s.now().Add(time.Duration(f.For))
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = append(s.faults, p)
	return nil
}

// ClearFaults drops every pending fault.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = nil
}

// Faults lists the pending faults with their remaining counts (or, for a fault with For, the
// time left).
func (s *Server) Faults() []Fault {
	now := s.now()
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		if f.expired(now) {
			continue
		}
		c := f.Fault
		c.Count = f.Remaining
		if !f.until.IsZero() {
			c.Count, c.For = 0, Duration(f.until.Sub(now))
		}
		out = append(out, c)
	}
	return out
}

func (s *Server) takeFault(op string) *Fault {
	now := s.now()
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = slices.DeleteFunc(s.faults, func(f *pendingFault) bool { return f.expired(now) })
	for i, f := range s.faults {
		if f.Op != op && f.Op != AnyOp {
			continue
		}
		if f.until.IsZero() {
			f.Remaining--
		}
		if f.until.IsZero() && f.Remaining <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		c := f.Fault
		return &c
	}
	return nil
}

// applyFault performs f; it reports whether the request is finished.
func (s *Server) applyFault(ctx context.Context, w http.ResponseWriter, f *Fault, iam bool) bool {
	switch f.Kind {
	case FaultLatency:
		t := time.NewTimer(time.Duration(f.Latency))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return true
		}
		return false
	case FaultHTML:
		w.Header().Set("X-Mockkp-Fault", "html")
		setRetryAfter(w, f.RetryAfter)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.Status)
		_, _ = fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>\n<body><h1>%d %s</h1><p>The service is unavailable. Please try again later.</p></body></html>\n",
			f.Status, http.StatusText(f.Status), f.Status, http.StatusText(f.Status))
		return true
	case FaultStatus:
		w.Header().Set("X-Mockkp-Fault", "status")
		setRetryAfter(w, f.RetryAfter)
		if iam {
			writeIAMError(w, f.Status, IAMCodeUnavailable, "Injected fault.")
			return true
		}
		writeKPError(w, errf(f.Status, faultCode(f.Status), "injected fault"))
		return true
	case FaultDrop:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return true
		}
		panic(http.ErrAbortHandler)
	}
	return false
}

func setRetryAfter(w http.ResponseWriter, d Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(retryAfterSeconds(time.Duration(d))/time.Second), 10))
	}
}

func faultCode(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return CodeTooManyRequests
	case http.StatusServiceUnavailable:
		return CodeServiceUnavailable
	case http.StatusUnauthorized, http.StatusForbidden:
		return CodeUnauthorized
	case http.StatusNotFound:
		return CodeKeyNotFound
	case http.StatusConflict:
		return CodeKeyActionInvalidState
	case http.StatusGone:
		return CodeKeyDeleted
	case http.StatusUnprocessableEntity:
		return CodeUnprocessableCipher
	}
	if status >= 500 {
		return CodeInternal
	}
	return CodeInvalidField
}

// AdminHandler serves the admin API; serve it on its own listener (never the API's):
//
//	GET    /healthz   "ok"
//	GET    /counters  {"<op>": n, ...} for every op
//	DELETE /counters  reset every counter (204)
//	GET    /faults    pending faults, with remaining counts
//	POST   /faults    queue a fault: {"op":"unwrap","kind":"status","status":503,"count":2},
//	                  {"op":"wrap","kind":"latency","latency":"250ms"}, {"op":"*","kind":"drop"},
//	                  {"op":"token","kind":"html","status":503,"retryAfter":"2s"} (201)
//	DELETE /faults    drop every pending fault (204)
//	                  A fault with "for":"30s" (instead of "count") affects every request of its
//	                  op for 30 s; "retryAfter":"2s" adds Retry-After to a status fault.
//	GET    /ratelimits   the rate limits (see RateLimit)
//	POST   /ratelimits   set one: {"op":"unwrap","rate":100,"burst":100,"retryAfter":"1s"} (201);
//	                     {"op":"unwrap"} without rate removes op's limit (204)
//	DELETE /ratelimits   remove every rate limit (204)
//
// GET /counters also holds "ratelimited.<op>": the 429s op's rate limit served.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /counters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Counters())
	})
	mux.HandleFunc("DELETE /counters", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCounters()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "failed to decode fault: " + err.Error()})
			return
		}
		if err := s.AddFault(f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, f)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	s.addRateLimitRoutes(mux)
	return mux
}
