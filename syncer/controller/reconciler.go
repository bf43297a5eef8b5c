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
	r := &Reconciler{o: o, cfgErr: errors.New("Secret keyprotect-config not found"),
		failed: map[string]string{}, announced: map[string]string{}}
	r.o.Metrics.KeysOnDisk.Set(float64(o.Store.Len()))
	return r, nil
}

// SetConfig loads keyprotect-config (nil when the Secret does not exist). It reports whether
// the usable configuration changed, in which case every kp-key Secret must be synced again.
func (r *Reconciler) SetConfig(sec *corev1.Secret) bool {
	var raw []byte
	var cfgErr error
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
// means a transient failure: sync again later, with backoff.
func (r *Reconciler) Sync(ctx context.Context, name string, sec *corev1.Secret, observed time.Time) error {
	defer func() { r.o.Metrics.KeysOnDisk.Set(float64(r.o.Store.Len())) }()
	if sec == nil {
		r.forget(name)
		return r.removeExcept(name, nil)
	}
	switch sec.Type {
	case corev1.SecretType(kpkey.SecretTypeKey):
		return r.syncKey(sec, observed)
	case corev1.SecretType(kpkey.SecretTypeKPKey):
		return r.syncKPKey(ctx, sec, observed)
	default:
		r.forget(name)
		return r.removeExcept(name, nil) // e.g. the type changed away from key
	}
}

// Prune removes every owned file whose Secret is not in present: the full resync's cleanup.
// Files the synchronizer does not own are never touched.
func (r *Reconciler) Prune(present map[string]bool) error {
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
	return errors.Join(errs...)
}

func (r *Reconciler) syncKey(sec *corev1.Secret, observed time.Time) error {
	files, rejected := secretkeys.KeyFiles(r.o.Namespace, sec.Name, sec.Data)
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
		return fmt.Errorf("failed to sync Secret %s: %w", sec.Name, err)
	}
	return nil
}

func (r *Reconciler) syncKPKey(ctx context.Context, sec *corev1.Secret, observed time.Time) error {
	file := keyfile.Name(r.o.Namespace, sec.Name, secretkeys.KPKeyDataKey)
	ref, rej, ok := secretkeys.ParseKPRef(string(sec.UID), sec.Data)
	if !ok {
		if r.announce(sec, "kp-invalid") {
			r.o.Metrics.Errors.WithLabelValues(rej.Reason).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected, rej.String())
		}
		return r.removeExcept(sec.Name, nil)
	}
	keep := map[string]bool{file: true}
	if rec, present := r.o.Store.Lookup(file); present && rec.Source == ref.Version {
		return r.removeExcept(sec.Name, keep) // this version is on disk: never unwrap again
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
		if Transient(err) {
			r.o.Metrics.UnwrapCalls.WithLabelValues("transient").Inc()
			r.o.Metrics.Errors.WithLabelValues(errUnwrapTransient).Inc()
			r.event(sec, corev1.EventTypeWarning, ReasonUnwrapFailed,
				fmt.Sprintf("unwrap failed, will retry with backoff (the previous key file, if any, stays): %v", err))
			return fmt.Errorf("failed to unwrap kp-key %s: %w", sec.Name, err)
		}
		r.o.Metrics.UnwrapCalls.WithLabelValues("permanent").Inc()
		r.o.Metrics.Errors.WithLabelValues(errUnwrapPermanent).Inc()
		r.fail(sec.Name, ref.Version)
		r.event(sec, corev1.EventTypeWarning, ReasonUnwrapFailed, fmt.Sprintf("unwrap failed, not retried: %v", err))
		return r.removeExcept(sec.Name, nil)
	}
	r.o.Metrics.UnwrapCalls.WithLabelValues("ok").Inc()
	data, reason, err := secretkeys.Normalize(pemData)
	if err != nil {
		r.o.Metrics.Errors.WithLabelValues(reason).Inc()
		r.fail(sec.Name, ref.Version)
		r.event(sec, corev1.EventTypeWarning, ReasonKeyRejected,
			(secretkeys.Rejection{DataKey: kpkey.CiphertextKey, Reason: reason, Err: err}).String()+" (after unwrap)")
		return r.removeExcept(sec.Name, nil)
	}
	wrote, err := r.o.Store.Put(file, keyfile.Record{Namespace: r.o.Namespace, Secret: sec.Name,
		DataKey: secretkeys.KPKeyDataKey, Source: ref.Version}, data)
	if err != nil {
		r.o.Metrics.Errors.WithLabelValues(errWrite).Inc()
		return fmt.Errorf("failed to sync Secret %s: %w", sec.Name, err)
	}
	r.announce(sec, "kp-ok")
	if wrote {
		r.o.Metrics.FileWrites.Inc()
		r.synced(sec, 1, observed)
	}
	return r.removeExcept(sec.Name, keep)
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
	for file, rec := range r.o.Store.Owned() {
		if rec.Namespace != r.o.Namespace || rec.Secret != name || keep[file] {
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
