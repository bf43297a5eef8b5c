// Command keysync-node-agent is the node half of the conformance suites' node drivers: it
// answers one operation of the node agent protocol (list-keys, read-key, audit, pull, run,
// wait) on the node's keys tree and CRI socket. The kind driver copies it into each node
// container; on any cluster it runs in one pod per node (the agent image, FROM scratch). See
// package suites/nodedriver/agent. It must stay small and static: it links no Kubernetes
// client, kind, e2e-framework or testing (deps_test.go checks).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keysync-dev/keysync/suites/nodedriver/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.MainIO(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
