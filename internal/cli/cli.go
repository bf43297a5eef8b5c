// Package cli is the keysync command tree. Each subcommand lives in its own package under
// internal/cli/<name> with NewCommand(*Streams) *cobra.Command and only turns flags into calls
// of the library packages (mockkp, syncer, fixtures, lab, suites).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// Streams are the command's standard streams: program output goes to Out, progress and
// errors to ErrOut. Tests pass buffers.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Logger writes structured progress to ErrOut.
	Logger *slog.Logger
}

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Subcommand builds one subcommand of the tree.
type Subcommand func(*Streams) *cobra.Command

// Run executes the command tree built from subs with args and returns the process exit code.
// Errors are printed once, here.
func Run(ctx context.Context, s *Streams, args []string, subs ...Subcommand) int {
	root := &cobra.Command{
		Use:           "keysync",
		Short:         "Test harness and conformance suite for image key synchronizers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	for _, sub := range subs {
		root.AddCommand(sub(s))
	}
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(s.ErrOut, "ERROR: %v\n", err)
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return 1
	}
	return 0
}
