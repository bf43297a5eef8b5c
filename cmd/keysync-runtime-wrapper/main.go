// Command keysync-runtime-wrapper is an OCI runtime wrapper for hosts whose capability bounding
// set lacks CAP_SYS_RESOURCE (check: `grep CapBnd /proc/self/status`, bit 24 clear), such as the
// VMs the keysync labs run on. There, runc refuses privileged containers ("unable to apply caps:
// operation not permitted") and containers that ask for a lower oom_score_adj than their caller
// (CRI-O infra containers, static pods: "failed to update /proc/self/oom_score_adj").
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
// For `create`/`run` it removes CAP_SYS_RESOURCE from every capability set of the bundle's
// config.json (--bundle/-b, default the working directory) and raises process.oomScoreAdj to its
// own /proc/self/oom_score_adj when lower; for `exec` it does the same to the --process file.
// Then it execs the real runtime with the original arguments: the leading
// --keysync-runtime=PATH argument, else $KEYSYNC_RUNTIME, else runc on PATH, /usr/bin/runc or
// /usr/sbin/runc. Every other command passes straight through, and on a host whose bounding set
// has CAP_SYS_RESOURCE nothing is rewritten. Install it only on hosts that need it.
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
