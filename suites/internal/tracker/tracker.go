// Package tracker records what a suite creates and undoes it in reverse order (LIFO), like
// csi-sanity's Resources: every cleanup runs even when an earlier one fails, and all errors
// are returned together.
package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Tracker is safe for concurrent use. The zero value is ready.
type Tracker struct {
	mu    sync.Mutex
	items []item
}

type item struct {
	what string
	undo func(context.Context) error
}

// Add records undo, described by what ("Secret image-key-synchronizer/x"), to run at Cleanup.
func (t *Tracker) Add(what string, undo func(context.Context) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.items = append(t.items, item{what, undo})
}

// Len is the number of pending cleanups.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.items)
}

// Cleanup runs every recorded undo, last added first, and forgets them. It returns every
// failure joined, each as "failed to clean up <what>: <err>".
func (t *Tracker) Cleanup(ctx context.Context) error {
	t.mu.Lock()
	items := t.items
	t.items = nil
	t.mu.Unlock()
	var errs []error
	for i := len(items) - 1; i >= 0; i-- {
		if err := items[i].undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("failed to clean up %s: %w", items[i].what, err))
		}
	}
	return errors.Join(errs...)
}
