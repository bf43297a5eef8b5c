package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadCRILog(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "run.log")
	log := "2026-11-23T12:00:00.1Z stdout F keysync-fixture marker\n" +
		"2026-11-23T12:00:00.2Z stdout P part-\n" +
		"2026-11-23T12:00:00.3Z stdout F one\n" +
		"2026-11-23T12:00:00.4Z stderr F \n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readCRILog(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "keysync-fixture marker\npart-one\n\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
