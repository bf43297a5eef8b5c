package kindlab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// docker runs the docker CLI and returns its trimmed stdout; the error carries stderr.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to run docker %s: %w: %s", firstWords(args, 2), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func firstWords(args []string, n int) string {
	if len(args) > n {
		args = args[:n]
	}
	return strings.Join(args, " ")
}

// containerExists reports whether a container (running or not) has this name.
func containerExists(ctx context.Context, name string) (bool, error) {
	out, err := docker(ctx, nil, "ps", "-a", "--filter", "name=^/"+name+"$", "--format", "{{.Names}}")
	if err != nil {
		return false, err
	}
	return out == name, nil
}

// containerIP is a container's address on a docker network.
func containerIP(ctx context.Context, name, network string) (string, error) {
	ip, err := docker(ctx, nil, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
	if err != nil {
		return "", err
	}
	if ip == "" || ip == "<no value>" {
		return "", fmt.Errorf("container %s has no address on network %s", name, network)
	}
	return ip, nil
}

// containerRunning reports whether a container with this name exists and runs.
func containerRunning(ctx context.Context, name string) (bool, error) {
	out, err := docker(ctx, nil, "ps", "--filter", "name=^/"+name+"$", "--filter", "status=running", "--format", "{{.Names}}")
	if err != nil {
		return false, err
	}
	return out == name, nil
}
