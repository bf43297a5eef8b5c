// Command keysync is the harness CLI: wrap keys with Key Protect, build fixtures, run labs and
// conformance suites. See `keysync --help`.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/keysync-dev/keysync/internal/cli"
	conformancecmd "github.com/keysync-dev/keysync/internal/cli/conformance"
	doctorcmd "github.com/keysync-dev/keysync/internal/cli/doctor"
	fixturescmd "github.com/keysync-dev/keysync/internal/cli/fixtures"
	kpcmd "github.com/keysync-dev/keysync/internal/cli/kp"
	labcmd "github.com/keysync-dev/keysync/internal/cli/lab"
	pullsecretcmd "github.com/keysync-dev/keysync/internal/cli/pullsecret"
	"github.com/keysync-dev/keysync/internal/cli/wrap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	s := &cli.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	code := cli.Run(ctx, s, os.Args[1:],
		// One line per subcommand package under internal/cli/.
		labcmd.NewCommand,
		wrap.NewCommand,
		kpcmd.NewCommand,
		conformancecmd.NewCommand,
		fixturescmd.NewCommand,
		pullsecretcmd.NewCommand,
		doctorcmd.NewAgentCommand,
	)

	stop()
	os.Exit(code)
}
