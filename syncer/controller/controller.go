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
	// RetryBaseDelay and RetryMaxDelay bound the backoff of transient failures (1s, 5m).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Workers is the number of concurrent syncs (default 2).
	Workers int
	// AfterFullSync, when set, runs once the first full sync is done, before Ready reports
	// true (the program returns the initial list's garbage to the OS there).
	AfterFullSync func()
}

// Controller watches the Secrets of one namespace with an informer and syncs each change.
type Controller struct {
	o      Options
	rec    *Reconciler
	queue  workqueue.TypedRateLimitingInterface[string]
	lister corelisters.SecretNamespaceLister
	ready  atomic.Bool
	log    *slog.Logger

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
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = time.Second
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 5 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Reconciler.Logger == nil {
		o.Reconciler.Logger = slog.New(slog.DiscardHandler)
	}
	return &Controller{o: o, log: o.Reconciler.Logger, observed: map[string]time.Time{}}, nil
}

// Ready reports whether the first full sync is done.
func (c *Controller) Ready() bool { return c.ready.Load() }

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
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](c.o.RetryBaseDelay, c.o.RetryMaxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "secrets"})
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
	c.ready.Store(true)

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
	if c.queue != nil {
		c.queue.Add(sec.Name)
	}
}

// fullSync syncs the config, then every Secret, then prunes files of Secrets that are gone.
// Transient failures are queued for a retry; they do not block readiness.
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
					c.log.Warn("sync failed, will retry", "secret", sec.Name, "error", err)
					c.queue.AddRateLimited(sec.Name)
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
	if err := c.rec.Prune(present); err != nil {
		return fmt.Errorf("failed to prune key files: %w", err)
	}
	return nil
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
			c.log.Warn("sync failed, will retry", "secret", name, "error", err, "retries", c.queue.NumRequeues(name))
			c.queue.AddRateLimited(name)
		}
		return true
	}
	c.queue.Forget(name)
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
