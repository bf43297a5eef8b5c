// Command keysync-kms-plugin is a KMS v2 plug-in for kube-apiserver backed by an IBM Key
// Protect root key, configured by the KMS runbook's kmsplugin-config.yaml ($config_file or
// --config). See internal/kmsplugin and `keysync-kms-plugin --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keysync-dev/keysync/internal/kmsplugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := kmsplugin.Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
