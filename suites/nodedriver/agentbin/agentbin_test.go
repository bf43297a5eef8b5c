package agentbin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	ctx := context.Background()
	// Without a path, beside a test binary there is no agent: it is built.
	static, from, err := Load(ctx, "")
	if err != nil || from != "built from the checkout" || CheckStatic(static) != nil {
		t.Fatalf("Load(\"\") = %d bytes from %q, %v", len(static), from, err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dynamic, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"static linux/amd64", write("static", static), ""},
		{"dynamically linked", write("dynamic", dynamic), "dynamically linked"},
		{"not a program", write("script", []byte("#!/bin/sh\n")), "not an ELF program"},
		{"missing", filepath.Join(dir, "absent"), "failed to read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, from, err := Load(ctx, tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || from != tt.path || len(data) != len(static) {
				t.Fatalf("Load = %d bytes from %q, %v", len(data), from, err)
			}
		})
	}
}
