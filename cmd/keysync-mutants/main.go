// Command keysync-mutants runs the conformance suite against each mutant of the reference
// synchronizer on a node lab and prints which ones it kills (make mutants; internal/mutants).
// It is a test tool: the shipped keysync CLI does not reach it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keysync-dev/keysync/internal/mutants"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keysync-mutants", flag.ContinueOnError)
	fs.SetOutput(stderr)
	up := fs.String("up", "", "the `keysync lab up --kind node ...` command line (split on spaces); --synchronizer is appended (required)")
	bin := fs.String("mutant-bin", "bin/keysync-syncer-mutants", "keysync-syncer built with -tags keysync_mutants")
	labEnv := fs.String("lab-env", "_out/lab.env", "the env file the lab up writes")
	goTest := fs.String("go-test", "go test", "command that runs a test package (split on spaces)")
	only := fs.String("only", "", "comma-separated mutants to run (default: all)")
	noRef := fs.Bool("skip-reference", false, "do not run the reference (control) first")
	syncTimeout := fs.Duration("sync-timeout", 20*time.Second, "the suite's --sync-timeout (the reference syncs in well under a second)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *up == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "keysync-mutants: --up is required and no arguments are taken")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "keysync-mutants:", err)
		return 1
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	c := mutants.Config{Up: strings.Fields(*up), MutantBin: abs(*bin), LabEnv: abs(*labEnv), GoTest: strings.Fields(*goTest),
		Root: root, SyncTimeout: *syncTimeout, Log: stderr}
	table := mutants.Table
	if *only != "" {
		want := strings.Split(*only, ",")
		table = slices.DeleteFunc(slices.Clone(table), func(m mutants.Mutant) bool { return !slices.Contains(want, m.Name) })
		if len(table) != len(want) {
			fmt.Fprintf(stderr, "keysync-mutants: --only %s names an unknown mutant\n", *only)
			return 2
		}
	}
	rows := table
	if !*noRef {
		rows = append([]mutants.Mutant{mutants.ReferenceRow(table)}, table...)
	}
	start := time.Now()
	var results []mutants.Result
	for _, m := range rows {
		if ctx.Err() != nil {
			break
		}
		log.Info("running the suite", "mutant", m.Name, "areas", m.Areas)
		r := mutants.Run(ctx, c, m)
		log.Info("done", "mutant", m.Name, "killed", r.Killed(), "failures", len(r.Failures), "took", r.Duration.Round(time.Second), "error", r.Err)
		results = append(results, r)
	}
	// Leave the lab with the reference synchronizer, as make node-lab-up makes it.
	if err := mutants.Restore(context.WithoutCancel(ctx), c); err != nil {
		log.Warn("failed to put the reference synchronizer back", "error", err)
	}
	killed, total := mutants.PrintTable(stdout, results)
	fmt.Fprintf(stderr, "keysync-mutants: %s\n", time.Since(start).Round(time.Second))
	refOK := *noRef || (results[0].Err == nil && !results[0].Killed())
	if !refOK {
		fmt.Fprintln(stderr, "keysync-mutants: the reference fails the selected areas: the kills prove nothing")
	}
	if killed != total || total != len(table) || !refOK {
		return 1
	}
	for _, r := range results {
		if r.Err != nil {
			return 1
		}
	}
	return 0
}
