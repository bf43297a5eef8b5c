// Command render-labconfig writes the kind node image's share of the lab configuration
// (lab/labconfig: CRI-O's drop-in, registries.conf, policy.json) under a directory, at the
// paths they take in the image. hack/build-node-image.sh runs it into the build context.
//
//	go run ./hack/render-labconfig --pause-version 3.10.1 --out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab/kindlab"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render-labconfig:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("render-labconfig", flag.ContinueOnError)
	pause := fs.String("pause-version", "", "tag of the preloaded pause image (versions.env PAUSE_VERSION)")
	out := fs.String("out", "", "directory to write the files under (the image's root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" || *pause == "" {
		return fmt.Errorf("--out and --pause-version are required")
	}
	files, err := kindlab.NodeImageFiles(*pause)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		dst := filepath.Join(*out, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", filepath.Dir(dst), err)
		}
		if err := atomicfile.Write(dst, files[p], 0o644); err != nil {
			return fmt.Errorf("failed to write %s: %w", dst, err)
		}
	}
	return nil
}
