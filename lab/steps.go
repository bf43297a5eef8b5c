package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Step is one ordered step of a lab's bring-up or tear-down.
type Step struct {
	// Name is what the status line says ("Starting CRI-O").
	Name string
	// Run does the step. Its note (e.g. "reused", "pid 1234") is shown on the status line;
	// its error should name the log file to read (Process errors do).
	Run func(ctx context.Context) (note string, err error)
}

// StepError says which step failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %q failed: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// StepResult is the outcome of one step.
type StepResult struct {
	Name     string
	Note     string
	Duration time.Duration
	Err      error
}

// RunSteps runs steps in order, printing a status line with the duration of each to out
// ("✓ Starting etcd (reused) 0.01s", "✗ Starting CRI-O 1.20s"). It stops at the first failure
// unless keepGoing is set (tear-down), and returns the results and the failures as
// *StepError values (joined).
func RunSteps(ctx context.Context, out io.Writer, keepGoing bool, steps []Step) ([]StepResult, error) {
	var results []StepResult
	var errs []error
	total := time.Now()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			errs = append(errs, &StepError{Step: s.Name, Err: err})
			break
		}
		fmt.Fprintf(out, "• %s ...\n", s.Name)
		start := time.Now()
		note, err := s.Run(ctx)
		r := StepResult{Name: s.Name, Note: note, Duration: time.Since(start), Err: err}
		results = append(results, r)
		mark, suffix := "✓", ""
		if note != "" {
			suffix = " (" + note + ")"
		}
		if err != nil {
			mark = "✗"
		}
		fmt.Fprintf(out, "%s %s%s %.2fs\n", mark, s.Name, suffix, r.Duration.Seconds())
		if err != nil {
			errs = append(errs, &StepError{Step: s.Name, Err: err})
			if !keepGoing {
				break
			}
		}
	}
	fmt.Fprintf(out, "total %.2fs\n", time.Since(total).Seconds())
	if len(errs) == 1 {
		return results, errs[0]
	}
	return results, errors.Join(errs...)
}
