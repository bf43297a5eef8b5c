// Package agentbin finds the node agent binary (cmd/keysync-node-agent) that the kind driver
// copies into node containers and `keysync lab up --kind cluster` puts in the agent image, and
// checks that it can run FROM scratch on the nodes (static, linux/amd64).
package agentbin

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Name is the agent's program name; Package its Go package.
const (
	Name    = "keysync-node-agent"
	Package = "github.com/keysync-dev/keysync/cmd/keysync-node-agent"
)

// Load returns the agent binary and where it came from: the file at path when path is set;
// else keysync-node-agent beside the running program (`make build` puts both in bin/); else
// one built with `go build` from the keysync checkout holding the working directory (as
// `go test ./suites/...` runs). The binary is checked with CheckStatic.
func Load(ctx context.Context, path string) ([]byte, string, error) {
	if path == "" {
		if exe, err := os.Executable(); err == nil {
			sib := filepath.Join(filepath.Dir(exe), Name)
			if _, err := os.Stat(sib); err == nil {
				path = sib
			}
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("failed to read the node agent binary: %w", err)
		}
		if err := CheckStatic(data); err != nil {
			return nil, "", fmt.Errorf("the node agent binary %s: %w", path, err)
		}
		return data, path, nil
	}
	data, err := Build(ctx, "")
	if err != nil {
		return nil, "", err
	}
	return data, "built from the checkout", nil
}

// Build builds the agent (static, linux/amd64, stripped) from the keysync checkout holding
// srcDir (the working directory when empty) and returns it.
func Build(ctx context.Context, srcDir string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "keysync-node-agent-")
	if err != nil {
		return nil, fmt.Errorf("failed to create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, Name)
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, Package)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to build the node agent (run inside the keysync checkout, or put %s beside this program: make build): %w: %s",
			Name, err, strings.TrimSpace(string(output)))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("failed to read the node agent binary: %w", err)
	}
	return data, nil
}

// CheckStatic refuses what cannot run FROM scratch on the nodes: a binary for another platform,
// or one that needs a dynamic loader.
func CheckStatic(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF program the nodes can run: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("built for %s: the nodes need linux/amd64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: build it with CGO_ENABLED=0 (make build)")
		}
	}
	return nil
}
