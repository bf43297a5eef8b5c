// Command keysync-syncer is the reference Image Key Synchronizer: it writes the private keys
// of Secrets of type key and kp-key in its namespace into CRI-O's keys tree. See syncer/.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keysync-dev/keysync/syncer/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
