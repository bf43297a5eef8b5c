// Command leakscan is the foreign-key test's tool (hack/foreign-key-test.sh): it makes the key
// to plant, and afterwards looks for its bytes in everything a run wrote (internal/leakscan).
// It never prints key bytes.
//
//	go run ./hack/leakscan gen --out KEY.pem               # a fresh RSA-2048 key, PKCS#8, 0600
//	go run ./hack/leakscan scan --key KEY.pem [--skip P]... PATH...
//
// scan exits 1 naming every file holding a 16-byte run of the key (PEM base64, raw DER, hex,
// base64 of the PEM), 0 when none does.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/leakscan"
)

// errFound is scan's error when the key was found (exit 1 without a usage error).
var errFound = errors.New("the key's bytes were found")

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, errFound) {
			log.Error("leakscan failed", "err", err)
		}
		os.Exit(1)
	}
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: leakscan gen --out KEY | scan --key KEY [--skip P]... PATH...")
	}
	fs := flag.NewFlagSet("leakscan "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "gen":
		path := fs.String("out", "", "where to write the key (mode 0600)")
		bits := fs.Int("bits", 2048, "RSA key size")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *path == "" {
			return errors.New("gen: --out is required")
		}
		key, err := leakscan.NewRSAKey(*bits)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(*path, key, 0o600); err != nil {
			return fmt.Errorf("failed to write the key: %w", err)
		}
		return nil
	case "scan":
		keyPath := fs.String("key", "", "the planted key (PEM)")
		var skip list
		fs.Var(&skip, "skip", "a file or directory not to scan (where the key is kept); repeatable")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *keyPath == "" || fs.NArg() == 0 {
			return errors.New("scan: --key and at least one PATH are required")
		}
		key, err := os.ReadFile(*keyPath)
		if err != nil {
			return fmt.Errorf("failed to read the key: %w", err)
		}
		n, err := leakscan.NewNeedles(key)
		if err != nil {
			return err
		}
		found, files, err := n.Scan(fs.Args(), append(skip, *keyPath)...)
		if err != nil {
			return fmt.Errorf("scan incomplete: %w", err)
		}
		for _, f := range found {
			fmt.Fprintf(out, "LEAK %s\n", f)
		}
		fmt.Fprintf(out, "leakscan: %d files scanned under %s for %d chunks of the key: %d leak(s)\n",
			files, strings.Join(fs.Args(), " "), n.Len(), len(found))
		if len(found) > 0 {
			return errFound
		}
		return nil
	}
	return fmt.Errorf("unknown command %q (gen, scan)", args[0])
}
