package mockkp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Operation names, as used by counters and faults.
const (
	OpToken    = "token"
	OpCreate   = "create"
	OpGet      = "get"
	OpList     = "list"
	OpMetadata = "metadata"
	OpVersions = "versions"
	OpDelete   = "delete"
	OpRestore  = "restore"
	OpWrap     = "wrap"
	OpUnwrap   = "unwrap"
	OpRewrap   = "rewrap"
	OpRotate   = "rotate"
	OpDisable  = "disable"
	OpEnable   = "enable"
)

// Ops lists every operation name.
func Ops() []string {
	return []string{OpToken, OpCreate, OpGet, OpList, OpMetadata, OpVersions, OpDelete, OpRestore,
		OpWrap, OpUnwrap, OpRewrap, OpRotate, OpDisable, OpEnable}
}

// DefaultTokenTTL is the lifetime of issued access tokens (IAM's expires_in).
const DefaultTokenTTL = time.Hour

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 1 << 20

// Options configure a Server. The zero value is a valid, empty, in-memory server.
type Options struct {
	// Seed pre-creates instances, API keys and root keys (see Seed). Optional.
	Seed *Seed
	// StatePath, when set, is loaded by New (if it exists) and rewritten atomically after
	// every change.
	StatePath string
	// Now is the clock for token expiry, key expiration and dates. Default time.Now.
	Now func() time.Time
	// TokenTTL is the access token lifetime. Default DefaultTokenTTL. The official client
	// refreshes 60 s before expires_in, so a TTL of 60 s or less makes it fetch a token for
	// every request.
	TokenTTL time.Duration
	// Logger receives one line per request (never key material). Default: discard.
	Logger *slog.Logger
	// RateLimits limit operations (see RateLimit); the admin API changes them at run time.
	RateLimits []RateLimit
}

// Server is a mock Key Protect + IAM. It is safe for concurrent use.
type Server struct {
	now       func() time.Time
	tokenTTL  time.Duration
	log       *slog.Logger
	statePath string
	secret    []byte

	mu sync.RWMutex
	st *state

	counters map[string]*atomic.Int64

	faultMu sync.Mutex
	faults  []*pendingFault

	limiter *rateLimiter
}

// New builds a Server: it loads Options.StatePath if it exists, then applies Options.Seed.
func New(opts Options) (*Server, error) {
	s := &Server{
		now:       opts.Now,
		tokenTTL:  opts.TokenTTL,
		log:       opts.Logger,
		statePath: opts.StatePath,
		counters:  map[string]*atomic.Int64{},
		limiter:   newRateLimiter(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = DefaultTokenTTL
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, op := range Ops() {
		s.counters[op] = new(atomic.Int64)
		s.counters[RateLimitedCounter(op)] = new(atomic.Int64)
	}
	for _, l := range opts.RateLimits {
		if err := s.SetRateLimit(l); err != nil {
			return nil, err
		}
	}
	var err error
	if s.statePath != "" {
		s.st, err = loadState(s.statePath)
	} else {
		s.st, err = newState()
	}
	if err != nil {
		return nil, err
	}
	if opts.Seed != nil {
		if err := opts.Seed.Validate(); err != nil {
			return nil, fmt.Errorf("invalid seed: %w", err)
		}
		if err := s.st.applySeed(opts.Seed, s.now()); err != nil {
			return nil, fmt.Errorf("failed to apply seed: %w", err)
		}
	}
	s.secret = s.st.TokenSecret
	if s.statePath != "" {
		if err := s.st.save(s.statePath); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Requests returns how many requests of op (see Ops) the server received, including failed,
// fault-injected and rate-limited ones; Requests(RateLimitedCounter(op)) counts the 429s
// op's rate limit served.
func (s *Server) Requests(op string) int64 {
	if c, ok := s.counters[op]; ok {
		return c.Load()
	}
	return 0
}

// Counters returns every operation's request count and every RateLimitedCounter.
func (s *Server) Counters() map[string]int64 {
	m := make(map[string]int64, len(s.counters))
	for op, c := range s.counters {
		m[op] = c.Load()
	}
	return m
}

// ResetCounters sets every counter to zero.
func (s *Server) ResetCounters() {
	for _, c := range s.counters {
		c.Store(0)
	}
}

// Handler serves the Key Protect API, the IAM token endpoints and /healthz.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// statusRecorder captures the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (for dropped-connection faults).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// route is what a request asks for.
type route struct {
	op     string
	keyID  string
	write  bool // takes the state lock for writing and persists
	handle func(ctx context.Context, rq *kpRequest) (int, any, *apiError)
	iam    bool
	health bool
	err    *apiError // routing error (404, 405, unknown action)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	rt := s.route(r)
	if id := r.Header.Get("correlation-id"); id != "" {
		rec.Header().Set("Correlation-Id", id)
	}
	var fault FaultKind
	defer func() {
		attrs := []slog.Attr{
			// host and tls tell which name and listener a client used (a lab maps IAM's
			// and Key Protect's public names to the TLS listener).
			slog.String("method", r.Method), slog.String("host", r.Host), slog.Bool("tls", r.TLS != nil), slog.String("path", r.URL.Path),
			slog.String("op", rt.op), slog.Int("status", rec.status),
			slog.Duration("duration", time.Since(start)),
			slog.String("correlation_id", r.Header.Get("correlation-id")),
		}
		if fault != "" {
			attrs = append(attrs, slog.String("fault", string(fault)))
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}()
	if rt.op != "" {
		s.counters[rt.op].Add(1)
		if f := s.takeFault(rt.op); f != nil {
			fault = f.Kind
			if done := s.applyFault(r.Context(), rec, f, rt.iam); done {
				return
			}
		}
		if s.rateLimited(rec, r, rt.op, rt.iam) {
			fault = "rate-limit"
			return
		}
	}
	switch {
	case rt.health:
		rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rec.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(rec, "ok\n")
	case rt.iam:
		s.serveToken(rec, r)
	case rt.err != nil:
		writeKPError(rec, rt.err)
	default:
		s.serveKP(rec, r, rt)
	}
}

// cleanSegments splits the path, ignoring empty segments ("//api/v2/keys/" is /api/v2/keys).
func cleanSegments(p string) []string {
	var out []string
	for _, seg := range strings.Split(p, "/") {
		if seg != "" {
			out = append(out, seg)
		}
	}
	return out
}

// actionOp maps a key action to its operation name and whether it changes state.
func actionOp(action string) (op string, write, ok bool) {
	switch action {
	case "wrap", "unwrap", "rewrap":
		return action, false, true
	case "rotate", "disable", "enable", "restore":
		return action, true, true
	}
	return "", false, false
}

func (s *Server) route(r *http.Request) route {
	segs := cleanSegments(r.URL.Path)
	notFound := route{err: errf(http.StatusNotFound, CodeNotFound, "the requested resource does not exist")}
	methodErr := func(op string) route {
		return route{op: op, err: errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+r.Method+" is not allowed here")}
	}
	switch {
	case len(segs) == 1 && segs[0] == "healthz":
		return route{health: true}
	case len(segs) == 2 && (segs[0] == "identity" || segs[0] == "oidc") && segs[1] == "token":
		if r.Method != http.MethodPost {
			return methodErr(OpToken)
		}
		return route{op: OpToken, iam: true}
	case len(segs) < 3 || segs[0] != "api" || segs[1] != "v2" || (segs[2] != "keys" && segs[2] != "keys_with_policy_overrides"):
		return notFound
	}
	if len(segs) == 3 {
		switch {
		case r.Method == http.MethodPost:
			return route{op: OpCreate, write: true, handle: s.create}
		case r.Method == http.MethodGet && segs[2] == "keys":
			return route{op: OpList, handle: s.list}
		}
		return methodErr("")
	}
	if segs[2] != "keys" {
		return notFound
	}
	id := segs[3]
	rest := segs[4:]
	switch {
	case len(rest) == 0:
		switch r.Method {
		case http.MethodGet:
			return route{op: OpGet, keyID: id, handle: s.get}
		case http.MethodDelete:
			return route{op: OpDelete, keyID: id, write: true, handle: s.delete}
		case http.MethodPost:
			return s.actionRoute(id, r.URL.Query().Get("action"))
		}
		return methodErr("")
	case len(rest) == 1 && rest[0] == "metadata":
		if r.Method != http.MethodGet {
			return methodErr(OpMetadata)
		}
		return route{op: OpMetadata, keyID: id, handle: s.metadata}
	case len(rest) == 1 && rest[0] == "versions":
		if r.Method != http.MethodGet {
			return methodErr(OpVersions)
		}
		return route{op: OpVersions, keyID: id, handle: s.versions}
	case len(rest) == 1 && rest[0] == "restore":
		if r.Method != http.MethodPost {
			return methodErr(OpRestore)
		}
		return s.actionRoute(id, "restore")
	case len(rest) == 2 && rest[0] == "actions":
		if r.Method != http.MethodPost {
			return methodErr("")
		}
		return s.actionRoute(id, rest[1])
	}
	return notFound
}

func (s *Server) actionRoute(id, action string) route {
	op, write, ok := actionOp(action)
	if !ok {
		return route{err: errf(http.StatusBadRequest, CodeInvalidQueryParam, fmt.Sprintf("action %q is not supported", action))}
	}
	rt := route{op: op, keyID: id, write: write}
	switch op {
	case OpWrap:
		rt.handle = s.wrap
	case OpUnwrap:
		rt.handle = s.unwrap
	case OpRewrap:
		rt.handle = s.rewrap
	case OpRotate:
		rt.handle = s.rotate
	case OpDisable:
		rt.handle = s.disable
	case OpEnable:
		rt.handle = s.enable
	case OpRestore:
		rt.handle = s.restore
	}
	return rt
}

// kpRequest is an authenticated Key Protect request. The handler runs under s.mu.
type kpRequest struct {
	r     *http.Request
	inst  *instance
	keyID string
	body  []byte
	now   time.Time
}

// decode decodes the JSON body into v; an empty body or "null" leaves v as it is.
func (rq *kpRequest) decode(v any) *apiError {
	if len(strings.TrimSpace(string(rq.body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(rq.body, v); err != nil {
		return errf(http.StatusBadRequest, CodeBadBody, "the request body is not valid JSON for this operation")
	}
	return nil
}

func (s *Server) serveKP(w http.ResponseWriter, r *http.Request, rt route) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeKPError(w, errf(http.StatusBadRequest, CodeBadBody, "the request body could not be read or is too large"))
		return
	}
	now := s.now()
	sub, aerr := s.authenticate(r, now)
	if aerr != nil {
		writeKPError(w, aerr)
		return
	}
	if rt.write {
		s.mu.Lock()
		defer s.mu.Unlock()
	} else {
		s.mu.RLock()
		defer s.mu.RUnlock()
	}
	instID := r.Header.Get("bluemix-instance")
	inst := s.st.Instances[instID]
	if instID == "" || inst == nil || !contains(inst.Subjects, sub) {
		writeKPError(w, errf(http.StatusForbidden, CodeUnauthorized, "the user does not have access to the specified instance (bluemix-instance)"))
		return
	}
	persist := rt.write && s.statePath != ""
	var before []byte
	if persist {
		// A change that cannot be persisted is rolled back, so memory and file agree.
		if before, err = json.Marshal(s.st); err != nil {
			writeKPError(w, errf(http.StatusInternalServerError, CodeInternal, "failed to snapshot state"))
			return
		}
	}
	status, resp, aerr := rt.handle(r.Context(), &kpRequest{r: r, inst: inst, keyID: rt.keyID, body: body, now: now})
	if aerr != nil {
		writeKPError(w, aerr)
		return
	}
	if persist {
		if err := s.st.save(s.statePath); err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelError, "failed to persist state", slog.String("error", err.Error()))
			var restored state
			if json.Unmarshal(before, &restored) == nil {
				*s.st = restored
			}
			writeKPError(w, errf(http.StatusInternalServerError, CodeInternal, "failed to persist state"))
			return
		}
	}
	if resp == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, resp)
}

// authenticate checks the bearer token and returns its subject.
func (s *Server) authenticate(r *http.Request, now time.Time) (string, *apiError) {
	h := r.Header.Get("authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", errf(http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required in the authorization header")
	}
	claims, err := verifyToken(s.secret, strings.TrimSpace(tok))
	if err != nil {
		return "", errf(http.StatusUnauthorized, CodeUnauthorized, "the access token is invalid")
	}
	if !now.Before(time.Unix(claims.Exp, 0)) {
		return "", errf(http.StatusUnauthorized, CodeUnauthorized, "the access token has expired")
	}
	return claims.Sub, nil
}
