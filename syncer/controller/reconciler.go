// Package controller turns the Secrets of one namespace into key files: the Reconciler holds
// the decisions (validate, unwrap once per Secret version, write, remove, report), the
// Controller feeds it from informers through a rate-limited work queue.
package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/syncer/internal/mutant"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	"github.com/keysync-dev/keysync/syncer/secretkeys"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Event reasons, set on the Secret.
const (
	ReasonKeySynced     = "KeySynced"
	ReasonKeyRejected   = "KeyRejected"
	ReasonUnwrapFailed  = "UnwrapFailed"
	ReasonConfigMissing = "ConfigMissing"
	// ReasonWriteFailed: a key file could not be written or removed (disk full, permissions,
	// a failed rename); retried with backoff, and /readyz stays false until it succeeds.
	ReasonWriteFailed = "WriteFailed"
	// ReasonWriteRecovered: a previous write of this kp-key file was interrupted (a crash or a
	// failed write between staging and record); the key was unwrapped and written again.
	ReasonWriteRecovered = "WriteRecovered"
	// ReasonConfigRejected (on keyprotect-config): the config would send the API key over
	// plain http or to a host that is neither IAM's nor Key Protect's.
	ReasonConfigRejected = "ConfigRejected"
	// ReasonInsecureConfig (on keyprotect-config): such a config is in use because the
	// synchronizer runs with --allow-insecure-kp (labs with a mock Key Protect).
	ReasonInsecureConfig = "InsecureConfigAllowed"
)

// Reasons of KeyRejected Events (and error metrics) for the file limits.
const (
	RejectTooManyKeys  = "too-many-keys"  // more keys in one Secret than MaxFilesPerSecret
	RejectTooManyFiles = "too-many-files" // the keys tree would hold more than MaxFiles
)

// Default file limits: a 1 MiB Secret of small EC keys holds thousands of them.
const (
	DefaultMaxFilesPerSecret = 256
	DefaultMaxFiles          = 4096
)

// Error reasons used only in metrics (the rest come from secretkeys).
const (
	errConfigMissing   = "config-missing"
	errUnwrapTransient = "unwrap-transient"
	errUnwrapPermanent = "unwrap-permanent"
	errWrite           = "write-failed"
)

// EventSink receives Events about Secrets; record.EventRecorder is one.
type EventSink interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Namespace string
	NodeName  string
	Store     *keyfile.Store
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	Events    EventSink
	// NewUnwrapper builds the unwrapper from keyprotect-config (default KeyProtect(nil)).
	NewUnwrapper UnwrapperFactory
	// UnwrapTimeout bounds one unwrap attempt, the client's own retries included (default 30s).
	UnwrapTimeout time.Duration
	// AllowInsecureKP accepts a keyprotect-config that fails kpkey.Config.CheckEndpoints
	// (http, a token host that is not IAM's): for labs with a mock Key Protect only. Each such
	// config gets a Warning Event.
	AllowInsecureKP bool
	// MaxFilesPerSecret bounds the files of one Secret (default DefaultMaxFilesPerSecret): a
	// Secret over it gets no files. MaxFiles bounds the owned files in total (default
	// DefaultMaxFiles): a Secret whose files would pass it gets no new ones.
	MaxFilesPerSecret, MaxFiles int
}

// Reconciler makes the keys tree follow the Secrets it is given.
type Reconciler struct {
	o ReconcilerOptions

	mu        sync.Mutex
	unwrapper Unwrapper
	cfgErr    error
	cfgHash   [32]byte
	// failed: Secret name → kp-key version whose unwrap or validation failed permanently.
	failed map[string]string
	// announced: Secret name → the announcement already made for the Secret's current state,
	// so resyncs do not repeat Events and error counts.
	announced map[string]string
	// writeFailing: Secrets whose last sync failed to write or remove a file.
	writeFailing map[string]bool
}

// NewReconciler checks the options and returns a Reconciler with no Key Protect config yet.
func NewReconciler(o ReconcilerOptions) (*Reconciler, error) {
	if o.Store == nil || o.Events == nil || o.Namespace == "" {
		return nil, errors.New("reconciler needs a namespace, a store and an event sink")
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NewUnwrapper == nil {
		o.NewUnwrapper = KeyProtect(nil)
	}
	if o.UnwrapTimeout <= 0 {
		o.UnwrapTimeout = 30 * time.Second
	}
	if o.MaxFilesPerSecret <= 0 {
		o.MaxFilesPerSecret = DefaultMaxFilesPerSecret
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	r := &Reconciler{o: o, cfgErr: errors.New("Secret keyprotect-config not found"),
		failed: map[string]string{}, announced: map[string]string{}, writeFailing: map[string]bool{}}
	r.o.Metrics.KeysOnDisk.Set(float64(o.Store.Len()))
	return r, nil
}

// SetConfig loads keyprotect-config (nil when the Secret does not exist). It reports whether
// the usable configuration changed, in which case every kp-key Secret must be synced again.
func (r *Reconciler) SetConfig(sec *corev1.Secret) bool {
	var raw []byte
	var cfgErr, insecure error
	var u Unwrapper
	switch {
	case sec == nil:
		cfgErr = errors.New("Secret keyprotect-config not found")
	default:
		var ok bool
		if raw, ok = sec.Data[kpkey.ConfigKey]; !ok {
			cfgErr = errors.New("Secret keyprotect-config has no config.json")
		} else if cfg, err := kpkey.ParseConfig(raw); err != nil {
			cfgErr = err
		} else if insecure = cfg.CheckEndpoints(); insecure != nil && !r.o.AllowInsecureKP {
			cfgErr = insecure
		} else if u, err = r.o.NewUnwrapper(cfg); err != nil {
			cfgErr = fmt.Errorf("failed to build Key Protect client: %w", err)
		}
	}
	h := sha256.Sum256(append(append([]byte{}, raw...), []byte(fmt.Sprint(cfgErr))...))
	r.mu.Lock()
	defer r.mu.Unlock()
	if h == r.cfgHash && (u == nil) == (r.unwrapper == nil) {
		return false
	}
	r.cfgHash, r.unwrapper, r.cfgErr = h, u, cfgErr
	switch {
	case insecure != nil && u != nil:
		r.event(sec, corev1.EventTypeWarning, ReasonInsecureConfig,
			fmt.Sprintf("using it although %v, because the synchronizer runs with --allow-insecure-kp (labs only)", insecure))
	case insecure != nil && errors.Is(cfgErr, kpkey.ErrInsecureConfig):
		r.event(sec, corev1.EventTypeWarning, ReasonConfigRejected,
			fmt.Sprintf("not used: %v (kp-key Secrets wait; --allow-insecure-kp overrides this for labs)", insecure))
	}
	if u != nil {
		// A new config may fix what failed (wrong instance, bad API key): try those again.
		r.failed = map[string]string{}
		r.o.Logger.Info("Key Protect config loaded")
	} else {
		r.o.Logger.Warn("Key Protect config unusable", "error", cfgErr)
	}
	return true
}

// Sync makes the files of Secret name follow sec (nil when the Secret is gone). observed is
// when the change was first seen (zero for resyncs); it feeds the latency histogram. An error
// means a transient failure: sync again later, with backoff (RetryAfter(err) is the least
// delay the service asked for).
func (r *Reconciler) Sync(ctx context.Context, name string, sec *corev1.Secret, observed time.Time) error {
	defer func() { r.o.Metrics.KeysOnDisk.Set(float64(r.o.Store.Len())) }()
	var err error
	switch {
	case sec == nil && mutant.On(mutant.KeepOnDelete):
		r.forget(name)
	case sec == nil:
		r.forget(name)
		err = r.removeExcept(name, nil)
	case sec.Type == corev1.SecretType(kpkey.SecretTypeKPKey) && mutant.On(mutant.IgnoreKPKey):
	case sec.Type == corev1.SecretType(kpkey.SecretTypeKey):
		err = r.syncKey(sec, observed)
	case sec.Type == corev1.SecretType(kpkey.SecretTypeKPKey):
		err = r.syncKPKey(ctx, sec, observed)
	default:
		r.forget(name)
		err = r.removeExcept(name, nil) // e.g. the type changed away from key
	}
	var we *writeError
	r.mu.Lock()
	if errors.As(err, &we) {
		r.writeFailing[name] = true
	} else {
		delete(r.writeFailing, name)
	}
	r.mu.Unlock()
	if we != nil && sec != nil {
		r.event(sec, corev1.EventTypeWarning, ReasonWriteFailed,
			fmt.Sprintf("failed to update the key files, will retry with backoff: %v", err))
	}
	return err
}

// WriteFailures is the number of Secrets whose last sync failed to write or remove a file.
func (r *Reconciler) WriteFailures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writeFailing)
}

// writeError marks a failure of the keys tree itself (as opposed to Key Protect).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func asWriteError(err error) error {
	if err == nil {
		return nil
	}
	return &writeError{err}
}

// Prune removes every owned file whose Secret is not in present: the full resync's cleanup.
// Files the synchronizer does not own are never touched.
func (r *Reconciler) Prune(present map[string]bool) error {
	if mutant.On(mutant.KeepOnDelete) {
		return nil
	}
	var errs []error
	for file, rec := range r.o.Store.Owned() {
		if rec.Namespace == r.o.Namespace && present[rec.Secret] {
			continue
		}
		if err := r.remove(file); err != nil {
			errs = append(errs, err)
		}
	}
	r.o.Metrics.LastSync.SetToCurrentTime()
	return asWriteError(errors.Join(errs...))
}

func (r *Reconciler) syncKey(sec *corev1.Secret, observed time.Time) error {
	files, rejected := secretkeys.KeyFiles(r.o.Namespace, sec.Name, sec.Data)
	if len(files) > r.o.MaxFilesPerSecret {
		// The Secret's own fault: none of its keys is used, like any invalid Secret.
		if r.announce(sec, "too-many-keys") {
			r.o.Metrics.Errors.WithLabelValues(RejectTooManyKeys).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, fmt.Sprintf(
				"%s: %d valid keys, more than %d per Secret (--max-files-per-secret): no file is written for this Secret",
				RejectTooManyKeys, len(files), r.o.MaxFilesPerSecret))
		}
		return asWriteError(r.removeExcept(sec.Name, nil))
	}
	if n := r.filesAfter(sec.Name, len(files)); n > r.o.MaxFiles {
		// Not this Secret's fault alone: what it has on disk stays, nothing new is written.
		if r.announce(sec, "too-many-files") {
			r.o.Metrics.Errors.WithLabelValues(RejectTooManyFiles).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, fmt.Sprintf(
				"%s: its %d key files would make %d in the keys tree, more than %d (--max-files): its files are not updated",
				RejectTooManyFiles, len(files), n, r.o.MaxFiles))
		}
		return nil
	}
	keep := map[string]bool{}
	written := 0
	var errs []error
	for _, f := range files {
		keep[f.Name] = true
		wrote, err := r.o.Store.Put(f.Name, keyfile.Record{Namespace: r.o.Namespace, Secret: sec.Name, DataKey: f.DataKey}, f.Data)
		if err != nil {
			r.o.Metrics.Errors.WithLabelValues(errWrite).Inc()
			errs = append(errs, err)
			continue
		}
		if wrote {
			written++
			r.o.Metrics.FileWrites.Inc()
		}
	}
	if err := r.removeExcept(sec.Name, keep); err != nil {
		errs = append(errs, err)
	}
	if mutant.On(mutant.RejectWipes) && len(rejected) > 0 {
		for file := range r.o.Store.Owned() {
			_ = r.remove(file)
		}
	}
	if r.announce(sec, "key") {
		for _, rej := range rejected {
			r.o.Metrics.Errors.WithLabelValues(rej.Reason).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, rej.String())
		}
	}
	if written > 0 {
		r.synced(sec, written, observed)
	}
	if err := errors.Join(errs...); err != nil {
		r.unannounce(sec.Name)
		return asWriteError(fmt.Errorf("failed to sync Secret %s: %w", sec.Name, err))
	}
	return nil
}

// filesAfter is the number of owned files once Secret name has n files.
func (r *Reconciler) filesAfter(name string, n int) int {
	return r.o.Store.Len() - len(r.o.Store.OwnedBy(r.o.Namespace, name)) + n
}

func (r *Reconciler) syncKPKey(ctx context.Context, sec *corev1.Secret, observed time.Time) error {
	file := keyfile.Name(r.o.Namespace, sec.Name, secretkeys.KPKeyDataKey)
	keep := map[string]bool{file: true}
	// Files of an earlier type key Secret of this name (deleted and recreated as kp-key) go
	// now, not once Key Protect answers: they are not what the Secret says any more.
	if err := r.removeExcept(sec.Name, keep); err != nil {
		return asWriteError(err)
	}
	ref, rej, ok := secretkeys.ParseKPRef(string(sec.UID), sec.Data)
	if !ok {
		if r.announce(sec, "kp-invalid") {
			r.o.Metrics.Errors.WithLabelValues(rej.Reason).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, rej.String())
		}
		return asWriteError(r.removeExcept(sec.Name, nil))
	}
	rec, present := r.o.Store.Lookup(file)
	if present && rec.Source == ref.Version && !mutant.On(mutant.UnwrapEverySync) {
		return nil // this version is on disk: never unwrap again
	}
	_, owned := r.o.Store.OwnedBy(r.o.Namespace, sec.Name)[file]
	interrupted := owned && rec.Source == ""
	if !owned && r.filesAfter(sec.Name, 1) > r.o.MaxFiles {
		if r.announce(sec, "too-many-files") {
			r.o.Metrics.Errors.WithLabelValues(RejectTooManyFiles).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, fmt.Sprintf(
				"%s: the keys tree already holds %d files (--max-files): the kp-key is not unwrapped", RejectTooManyFiles, r.o.MaxFiles))
		}
		return nil
	}
	r.mu.Lock()
	u, cfgErr, failedVersion := r.unwrapper, r.cfgErr, r.failed[sec.Name]
	r.mu.Unlock()
	if failedVersion == ref.Version {
		return nil // reported already; a new Secret version or a new config retries
	}
	if u == nil {
		if r.announce(sec, "config:"+cfgErr.Error()) {
			r.o.Metrics.Errors.WithLabelValues(errConfigMissing).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonConfigMissing,
				fmt.Sprintf("waiting for a valid Secret %s/%s: %v", r.o.Namespace, kpkey.ConfigSecretName, cfgErr))
		}
		return nil // SetConfig reports the change that makes this Secret worth another sync
	}
	actx, cancel := context.WithTimeout(ctx, r.o.UnwrapTimeout)
	pemData, err := u.Unwrap(actx, ref.RootKeyID, ref.Ciphertext)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Permanent(err) {
			r.o.Metrics.UnwrapCalls.WithLabelValues("transient").Inc()
			r.o.Metrics.Errors.WithLabelValues(errUnwrapTransient).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonUnwrapFailed,
				fmt.Sprintf("unwrap failed, will retry with backoff (the previous key file, if any, stays): %s", describe(err)))
			if mutant.On(mutant.DeleteOnOutage) {
				_ = r.removeExcept(sec.Name, nil)
			}
			return fmt.Errorf("failed to unwrap kp-key %s: %w", sec.Name, err)
		}
		r.o.Metrics.UnwrapCalls.WithLabelValues("permanent").Inc()
		r.o.Metrics.Errors.WithLabelValues(errUnwrapPermanent).Inc()
		r.fail(sec.Name, ref.Version)
		r.event(sec, corev1.EventTypeWarning, ReasonUnwrapFailed,
			fmt.Sprintf("unwrap failed, not retried until the Secret or keyprotect-config changes; key file removed: %s", describe(err)))
		return asWriteError(r.removeExcept(sec.Name, nil))
	}
	r.o.Metrics.UnwrapCalls.WithLabelValues("ok").Inc()
	data, reason, err := secretkeys.Normalize(pemData)
	if err != nil {
		r.o.Metrics.Errors.WithLabelValues(reason).Inc()
		r.fail(sec.Name, ref.Version)
		r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected,
			(secretkeys.Rejection{DataKey: kpkey.CiphertextKey, Reason: reason, Err: err}).String()+" (after unwrap)")
		return asWriteError(r.removeExcept(sec.Name, nil))
	}
	wrote, err := r.o.Store.Put(file, keyfile.Record{Namespace: r.o.Namespace, Secret: sec.Name,
		DataKey: secretkeys.KPKeyDataKey, Source: ref.Version}, data)
	if err != nil {
		r.o.Metrics.Errors.WithLabelValues(errWrite).Inc()
		return asWriteError(fmt.Errorf("failed to sync Secret %s: %w", sec.Name, err))
	}
	r.announce(sec, "kp-ok")
	if interrupted {
		r.event(sec, corev1.EventTypeNormal, ReasonWriteRecovered,
			"a previous write of this key file was interrupted (crash or write failure); the key was unwrapped and written again")
	}
	if wrote {
		r.o.Metrics.FileWrites.Inc()
		r.synced(sec, 1, observed)
	}
	return nil
}

func (r *Reconciler) synced(sec *corev1.Secret, n int, observed time.Time) {
	if !observed.IsZero() {
		r.o.Metrics.SyncLatency.Observe(time.Since(observed).Seconds())
	}
	r.o.Metrics.LastSync.SetToCurrentTime()
	r.o.Logger.Info("key files written", "secret", sec.Name, "files", n)
	r.event(sec, corev1.EventTypeNormal, ReasonKeySynced, fmt.Sprintf("wrote %d key file(s) to %s", n, r.o.Store.Dir()))
}

// announce reports whether the (Secret version, state) pair is new, recording it.
func (r *Reconciler) announce(sec *corev1.Secret, state string) bool {
	id := string(sec.UID) + "/" + sec.ResourceVersion + "/" + state
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.announced[sec.Name] == id {
		return false
	}
	r.announced[sec.Name] = id
	return true
}

func (r *Reconciler) unannounce(name string) {
	r.mu.Lock()
	delete(r.announced, name)
	r.mu.Unlock()
}

func (r *Reconciler) forget(name string) {
	r.mu.Lock()
	delete(r.announced, name)
	delete(r.failed, name)
	r.mu.Unlock()
}

func (r *Reconciler) fail(name, version string) {
	r.mu.Lock()
	r.failed[name] = version
	r.mu.Unlock()
}

func (r *Reconciler) event(sec *corev1.Secret, typ, reason, msg string) {
	if mutant.On(mutant.NoEvents) {
		return
	}
	if r.o.NodeName != "" {
		msg = "node " + r.o.NodeName + ": " + msg
	}
	r.o.Events.Event(sec, typ, reason, msg)
	level := slog.LevelInfo
	if typ == corev1.EventTypeWarning {
		level = slog.LevelWarn
	}
	r.o.Logger.Log(context.Background(), level, msg, "secret", sec.Name, "reason", reason)
}

// removeExcept removes the owned files of Secret name that are not in keep.
func (r *Reconciler) removeExcept(name string, keep map[string]bool) error {
	var errs []error
	for file := range r.o.Store.OwnedBy(r.o.Namespace, name) {
		if keep[file] {
			continue
		}
		if err := r.remove(file); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) remove(file string) error {
	removed, err := r.o.Store.Remove(file)
	if err != nil {
		r.o.Metrics.Errors.WithLabelValues(errWrite).Inc()
		return err
	}
	if removed {
		r.o.Metrics.FileRemovals.Inc()
		r.o.Logger.Info("key file removed", "file", file)
	}
	r.o.Metrics.KeysOnDisk.Set(float64(r.o.Store.Len()))
	return nil
}
