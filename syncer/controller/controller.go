package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/syncer/internal/mutant"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Component is the Event source and the addon's resource name.
const Component = "addon-image-key-synchronizer"

// Options configure a Controller. Reconciler.Events may be left nil: the Controller then
// records Events through the API server.
type Options struct {
	Client     kubernetes.Interface
	Reconciler ReconcilerOptions
	// ResyncPeriod is the informer resync (default 10m): each Secret is checked again, which
	// repairs a key file someone removed, without any unwrap call.
	ResyncPeriod time.Duration
	// Retry is the backoff of transient failures (DefaultRetryPolicy: 1s doubling to 5m,
	// jittered, never sooner than a Retry-After).
	Retry RetryPolicy
	// Workers is the number of concurrent syncs (default 2).
	Workers int
	// AfterFullSync, when set, runs once the first full sync is done, before Ready may report
	// true (the program returns the initial list's garbage to the OS there).
	AfterFullSync func()
}

// pruneKey is the queue item that retries a failed prune; no Secret can be named so.
const pruneKey = " prune"

// Controller watches the Secrets of one namespace with an informer and syncs each change.
type Controller struct {
	o      Options
	rec    *Reconciler
	queue  workqueue.TypedDelayingInterface[string]
	retry  *retryState
	lister corelisters.SecretNamespaceLister
	synced atomic.Bool // the first full sync is done
	// pruneFailed: the last prune of files of deleted Secrets failed (retried).
	pruneFailed atomic.Bool
	log         *slog.Logger

	mu       sync.Mutex
	observed map[string]time.Time
}

// New builds a Controller; Run starts it.
func New(o Options) (*Controller, error) {
	if o.Client == nil {
		return nil, errors.New("controller needs a Kubernetes client")
	}
	if o.ResyncPeriod <= 0 {
		o.ResyncPeriod = 10 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Reconciler.Logger == nil {
		o.Reconciler.Logger = slog.New(slog.DiscardHandler)
	}
	return &Controller{o: o, log: o.Reconciler.Logger, observed: map[string]time.Time{}, retry: newRetryState(o.Retry)}, nil
}

// Ready reports whether the keys tree is known to follow the Secrets: the first full sync is
// done and no write or removal of a key file is failing. A Key Protect outage does not make
// the synchronizer unready (the previous files stay and are right as far as it can know).
func (c *Controller) Ready() bool {
	return c.synced.Load() && !c.pruneFailed.Load() && c.rec != nil && c.rec.WriteFailures() == 0
}

// Run syncs until ctx ends: start the informer, wait for its cache, do a full sync (every
// Secret, then prune owned files of Secrets that are gone), report ready, then follow changes.
func (c *Controller) Run(ctx context.Context) error {
	ropts := c.o.Reconciler
	if ropts.Events == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		defer b.Shutdown()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.o.Client.CoreV1().Events(ropts.Namespace)})
		ropts.Events = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component, Host: ropts.NodeName})
	}
	rec, err := NewReconciler(ropts)
	if err != nil {
		return err
	}
	c.rec = rec
	c.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{Name: "secrets"})
	defer c.queue.ShutDown()

	factory := informers.NewSharedInformerFactoryWithOptions(c.o.Client, c.o.ResyncPeriod,
		informers.WithNamespace(ropts.Namespace))
	secrets := factory.Core().V1().Secrets()
	informer := secrets.Informer()
	c.lister = secrets.Lister().Secrets(ropts.Namespace)
	// Keep only what the sync needs in the cache: managed fields and kubectl's
	// last-applied-configuration (a second copy of the data) are dropped.
	if err := informer.SetTransform(trimSecret); err != nil {
		return fmt.Errorf("failed to set informer transform: %w", err)
	}
	// The Secrets of the first list are synced by the full sync below: queueing their Add
	// events as well would sync every Secret a second time right after start (and retry a
	// transient failure at once instead of after the backoff).
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initialList bool) {
			if !initialList {
				c.enqueue(obj, true)
			}
		},
		UpdateFunc: func(old, obj any) {
			if mutant.On(mutant.IgnoreUpdates) {
				return
			}
			o, _ := old.(*corev1.Secret)
			n, _ := obj.(*corev1.Secret)
			c.enqueue(obj, o == nil || n == nil || o.ResourceVersion != n.ResourceVersion)
		},
		DeleteFunc: func(obj any) { c.enqueue(obj, true) },
	})
	if err != nil {
		return fmt.Errorf("failed to add event handler: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !waitSynced(ctx, reg.HasSynced) {
		return fmt.Errorf("failed to sync Secret informer: %w", context.Cause(ctx))
	}
	start := time.Now()
	if err := c.fullSync(ctx); err != nil {
		return err
	}
	c.log.Info("full sync done", "duration", time.Since(start).String(), "files", c.o.Reconciler.Store.Len())
	if c.o.AfterFullSync != nil {
		c.o.AfterFullSync()
	}
	c.synced.Store(true)

	var wg sync.WaitGroup
	for range c.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) enqueue(obj any, changed bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	if changed {
		c.mu.Lock()
		if _, seen := c.observed[sec.Name]; !seen {
			c.observed[sec.Name] = time.Now()
		}
		c.mu.Unlock()
	}
	switch {
	case c.queue == nil:
	case mutant.On(mutant.Poll60s):
		c.queue.AddAfter(sec.Name, 60*time.Second)
	default:
		c.queue.Add(sec.Name)
	}
}

// fullSync syncs the config, then every Secret, then prunes files of Secrets that are gone.
// Failures are queued for a retry with backoff; write failures keep Ready false until the
// retries succeed.
func (c *Controller) fullSync(ctx context.Context) error {
	c.loadConfig() // no queueing: every kp-key Secret is synced below
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("failed to list Secrets: %w", err)
	}
	present := map[string]bool{}
	work := make(chan *corev1.Secret)
	var wg sync.WaitGroup
	for range c.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sec := range work {
				if err := c.rec.Sync(ctx, sec.Name, sec, time.Time{}); err != nil {
					c.requeue(sec.Name, err)
				}
			}
		}()
	}
	for _, sec := range all {
		present[sec.Name] = true
		work <- sec
	}
	close(work)
	wg.Wait()
	c.prune(present)
	return nil
}

// prune removes the files of Secrets not in present; a failure is retried with backoff and
// keeps Ready false meanwhile.
func (c *Controller) prune(present map[string]bool) {
	if err := c.rec.Prune(present); err != nil {
		c.pruneFailed.Store(true)
		c.requeue(pruneKey, fmt.Errorf("failed to prune key files: %w", err))
		return
	}
	c.pruneFailed.Store(false)
	c.retry.forget(pruneKey)
}

// requeue schedules another attempt at item after the retry policy's delay.
func (c *Controller) requeue(item string, err error) {
	d := c.retry.fail(item, RetryAfter(err))
	c.log.Warn("sync failed, will retry", "secret", item, "error", err, "failures", c.retry.count(item), "retryIn", d.String())
	c.queue.AddAfter(item, d)
}

// loadConfig reloads keyprotect-config; it reports whether the usable configuration changed.
func (c *Controller) loadConfig() bool {
	sec, err := c.lister.Get(kpkey.ConfigSecretName)
	if err != nil {
		sec = nil
	}
	return c.rec.SetConfig(sec)
}

// syncConfig reloads keyprotect-config and, when it changed, queues every kp-key Secret.
func (c *Controller) syncConfig() {
	if !c.loadConfig() {
		return
	}
	all, _ := c.lister.List(labels.Everything())
	for _, s := range all {
		if s.Type == corev1.SecretType(kpkey.SecretTypeKPKey) {
			c.queue.Add(s.Name)
		}
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	name, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(name)
	if name == pruneKey {
		all, err := c.lister.List(labels.Everything())
		if err != nil {
			c.requeue(name, err)
			return true
		}
		present := map[string]bool{}
		for _, s := range all {
			present[s.Name] = true
		}
		c.prune(present)
		return true
	}
	if name == kpkey.ConfigSecretName {
		c.syncConfig()
	}
	sec, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		sec, err = nil, nil
	}
	c.mu.Lock()
	observed := c.observed[name]
	c.mu.Unlock()
	if err == nil {
		err = c.rec.Sync(ctx, name, sec, observed)
	}
	if err != nil {
		if ctx.Err() == nil {
			c.requeue(name, err)
		}
		return true
	}
	c.retry.forget(name)
	c.mu.Lock()
	if c.observed[name].Equal(observed) {
		delete(c.observed, name)
	}
	c.mu.Unlock()
	return true
}

// waitSynced waits for the informer's first list like cache.WaitForCacheSync, but polls every
// 5 ms instead of every 100 ms: the start-up full sync, hence readiness, follows the list
// without waiting for the next poll.
func waitSynced(ctx context.Context, synced cache.InformerSynced) bool {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !synced() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func trimSecret(obj any) (any, error) {
	if sec, ok := obj.(*corev1.Secret); ok {
		sec.ManagedFields = nil
		delete(sec.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	return obj, nil
}
