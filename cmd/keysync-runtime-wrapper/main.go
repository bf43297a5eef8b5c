// Command keysync-runtime-wrapper is an OCI runtime wrapper for hosts whose capability bounding
// set lacks capabilities containers ask for: VMs without CAP_SYS_RESOURCE (check: `grep CapBnd
// /proc/self/status`, bit 24 clear), such as the ones the keysync labs run on, and kind nodes
// started by an older dockerd (bits 38-40 clear). There, runc refuses privileged containers
// ("unable to apply caps: operation not permitted") and, without CAP_SYS_RESOURCE, containers
// that ask for a lower oom_score_adj than their caller (CRI-O infra containers, static pods:
// "failed to update /proc/self/oom_score_adj").
//
// Install it in place of runc where the runtime is configured — CRI-O:
//
//	[crio.runtime.runtimes.runc]
//	runtime_path = "/usr/local/bin/keysync-runtime-wrapper"
//
// dockerd (/etc/docker/daemon.json):
//
//	{"runtimes": {"keysync": {"path": "/usr/local/bin/keysync-runtime-wrapper",
//	  "runtimeArgs": ["--keysync-runtime=/usr/sbin/runc"]}}, "default-runtime": "keysync"}
//
// For `create`/`run` it removes every capability outside its own bounding set from every
// capability set of the bundle's config.json (--bundle/-b, default the working directory) and,
// where CAP_SYS_RESOURCE is missing, raises process.oomScoreAdj to its own
// /proc/self/oom_score_adj when lower; for `exec` it does the same to the --process file. Then it
// execs the real runtime with the original arguments: the leading --keysync-runtime=PATH
// argument, else $KEYSYNC_RUNTIME, else runc on PATH, /usr/bin/runc or /usr/sbin/runc. Every
// other command passes straight through, and a file asking for nothing the host cannot grant is
// left untouched. Install it only on hosts that need it.
//
// Build it static: CGO_ENABLED=0 go build ./cmd/keysync-runtime-wrapper.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/keysync-dev/keysync/internal/runtimewrap"
)

func main() {
	self, _ := os.Executable()
	w := &runtimewrap.Wrapper{
		StatusPath:      "/proc/self/status",
		OOMScoreAdjPath: "/proc/self/oom_score_adj",
		Getenv:          os.Getenv,
		Getwd:           os.Getwd,
		LookPath:        exec.LookPath,
		Self:            self,
	}
	path, argv, err := w.Prepare(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "keysync-runtime-wrapper: %v\n", err)
		os.Exit(1)
	}
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "keysync-runtime-wrapper: failed to exec %s: %v\n", path, err)
		os.Exit(1)
	}
}
