package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
)

// One run at a time uses the agent's namespace: the run that deploys the agent holds the
// Lease LeaseName there and renews it while it runs. A second run finds the Lease renewed
// within its duration and refuses (ErrBusy) before it touches anything; a Lease its holder
// stopped renewing (a killed run) is taken over, and with it what that run left (its
// DaemonSet, its namespace).

// LeaseName is the Lease in the agent's namespace naming the run that uses it.
const LeaseName = AgentName

// Lease timing: renewed every DefaultLeaseRenew, held for DefaultLeaseDuration after the last
// renewal (a killed run's Lease blocks the next run at most that long; `keysync conformance
// cleanup` removes it at once).
const (
	DefaultLeaseDuration = 60 * time.Second
	DefaultLeaseRenew    = 15 * time.Second
)

// ErrBusy is Deploy's error when another live run uses the agent's namespace.
var ErrBusy = errors.New("another keysync run is using the node agent's namespace")

// errLeaseLost is a renewal's error when another holder took the Lease over.
var errLeaseLost = errors.New("the Lease was taken over by another run")

// holderIdentity names this run in the Lease: its run ID, host and process, and a random
// suffix (two runs given the same --run-id are still two holders).
func holderIdentity(labels map[string]string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	host, _ := os.Hostname()
	id := labels[names.LabelRunID]
	if id == "" {
		id = "unknown-run"
	}
	return fmt.Sprintf("%s@%s/%d/%s", id, host, os.Getpid(), hex.EncodeToString(b))
}

// leaseLabels are the run's labels on the Lease (so that the run's sweep and `keysync
// conformance cleanup` find it).
func (d *Driver) leaseLabels() map[string]string {
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[labelManaged] = managedBy
	return labels
}

// leaseSpec is the Lease's spec held by this run, renewed now.
func (d *Driver) leaseSpec(now time.Time, acquired *metav1.MicroTime, transitions int32) coordinationv1.LeaseSpec {
	secs := int32(d.opts.LeaseDuration / time.Second)
	t := metav1.NewMicroTime(now)
	if acquired == nil {
		acquired = &t
	}
	return coordinationv1.LeaseSpec{HolderIdentity: &d.holder, LeaseDurationSeconds: &secs,
		AcquireTime: acquired, RenewTime: &t, LeaseTransitions: &transitions}
}

// liveHolder is the Lease's holder when it is still held at now ("" when it expired or has
// none), and how long ago it was renewed.
func liveHolder(l *coordinationv1.Lease, now time.Time) (holder string, since time.Duration, left time.Duration) {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return "", 0, 0
	}
	since = now.Sub(s.RenewTime.Time)
	left = time.Duration(*s.LeaseDurationSeconds)*time.Second - since
	if left <= 0 {
		return "", since, 0
	}
	return *s.HolderIdentity, since, left
}

// acquireLease takes the agent namespace's Lease for this run: it creates it, or takes over one
// that expired (its run was killed), or fails with ErrBusy while another run renews it.
func (d *Driver) acquireLease(ctx context.Context) error {
	leases := d.opts.Client.CoordinationV1().Leases(d.opts.Namespace)
	where := d.opts.Namespace + "/" + LeaseName
	for range 5 {
		now := time.Now()
		cur, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: d.opts.Namespace, Labels: d.leaseLabels()},
				Spec: d.leaseSpec(now, nil, 0)}
			created, err := leases.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue // another run was quicker: look again
			}
			if err != nil {
				return fmt.Errorf("failed to create Lease %s: %w", where, err)
			}
			d.leased, d.leaseUID = true, created.UID
			return nil
		}
		if err != nil {
			return fmt.Errorf("failed to get Lease %s: %w", where, err)
		}
		holder, since, left := liveHolder(cur, now)
		if holder != "" && holder != d.holder {
			return fmt.Errorf("%w (%s): run %s renewed Lease %s %s ago; wait until it ends. If it was killed, the Lease expires in %s, or `keysync conformance cleanup --run-id %s` removes what it left at once",
				ErrBusy, d.opts.Namespace, holder, where, since.Round(time.Second), left.Round(time.Second), cur.Labels[names.LabelRunID])
		}
		var transitions int32
		if cur.Spec.LeaseTransitions != nil {
			transitions = *cur.Spec.LeaseTransitions
		}
		if prev := cur.Spec.HolderIdentity; prev != nil && *prev != "" {
			d.opts.Logger.InfoContext(ctx, "taking over the Lease of a run that stopped renewing it (killed?)",
				"lease", where, "holder", *prev, "renewed_ago", since.Round(time.Second).String())
		}
		cur.Labels = d.leaseLabels()
		cur.Spec = d.leaseSpec(now, nil, transitions+1)
		updated, err := leases.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // changed since read: look again
		}
		if err != nil {
			return fmt.Errorf("failed to take over Lease %s: %w", where, err)
		}
		d.leased, d.leaseUID = true, updated.UID
		return nil
	}
	return fmt.Errorf("%w (%s): Lease %s changed under every attempt to take it", ErrBusy, d.opts.Namespace, where)
}

// renewLease renews the Lease once, unless another holder has it (errLeaseLost). A Lease
// that disappeared (deleted under the run: `keysync conformance cleanup`, an admin) is made
// again with this run as its holder, so that no second run starts meanwhile; one that another
// run made first is lost.
func (d *Driver) renewLease(ctx context.Context) error {
	leases := d.opts.Client.CoordinationV1().Leases(d.opts.Namespace)
	cur, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: d.opts.Namespace, Labels: d.leaseLabels()},
			Spec: d.leaseSpec(time.Now(), nil, 0)}
		created, err := leases.Create(ctx, l, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			return errLeaseLost
		case err != nil:
			return fmt.Errorf("failed to re-create Lease %s/%s (it disappeared): %w", d.opts.Namespace, LeaseName, err)
		}
		d.opts.Logger.WarnContext(ctx, "the Lease disappeared during the run: made again", "lease", d.opts.Namespace+"/"+LeaseName)
		d.leaseUID = created.UID
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to get Lease %s/%s: %w", d.opts.Namespace, LeaseName, err)
	}
	if h := cur.Spec.HolderIdentity; h == nil || *h != d.holder || cur.UID != d.leaseUID {
		return errLeaseLost
	}
	t := metav1.NewMicroTime(time.Now())
	cur.Spec.RenewTime = &t
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to renew Lease %s/%s: %w", d.opts.Namespace, LeaseName, err)
	}
	return nil
}

// keepLease renews the Lease every LeaseRenew until ctx ends (Close); it stops once the Lease
// was lost.
func (d *Driver) keepLease(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(d.opts.LeaseRenew)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := d.renewLease(ctx)
		switch {
		case errors.Is(err, errLeaseLost):
			d.opts.Logger.ErrorContext(ctx, "another run took the node agent's namespace over: this run's results there are unreliable",
				"lease", d.opts.Namespace+"/"+LeaseName)
			return
		case err != nil && ctx.Err() == nil:
			d.opts.Logger.WarnContext(ctx, "failed to renew the Lease", "err", err)
		}
	}
}

// startRenewing starts keepLease; stopRenewing (Close) stops it and waits for it.
func (d *Driver) startRenewing() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.stopRenew = func() {
		cancel()
		<-done
	}
	go d.keepLease(ctx, done)
}

// stillHeld stops the renewals and reports whether this run still holds the Lease (Close
// removes what the run made only then: a run that lost it would remove its successor's).
func (d *Driver) stillHeld(ctx context.Context) (*coordinationv1.Lease, error) {
	if d.stopRenew != nil {
		d.stopRenew()
		d.stopRenew = nil
	}
	if !d.leased {
		return nil, nil
	}
	cur, err := d.opts.Client.CoordinationV1().Leases(d.opts.Namespace).Get(ctx, LeaseName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("failed to get Lease %s/%s: %w", d.opts.Namespace, LeaseName, err)
	}
	if h := cur.Spec.HolderIdentity; h == nil || *h != d.holder || cur.UID != d.leaseUID {
		return nil, nil
	}
	return cur, nil
}

// releaseLease deletes the Lease l this run holds (pinned to its UID and version: a run that
// took it over meanwhile keeps it).
func (d *Driver) releaseLease(ctx context.Context, l *coordinationv1.Lease) error {
	d.leased = false
	if l == nil {
		return nil
	}
	err := d.opts.Client.CoordinationV1().Leases(d.opts.Namespace).Delete(ctx, LeaseName,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("failed to delete Lease %s/%s: %w", d.opts.Namespace, LeaseName, err)
	}
	return nil
}
