package nodedriver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// onNode is a base driver whose keys tree is a map: it audits on the node and counts reads.
type onNode struct {
	stub
	files map[string][]byte
	reads int
}

func (d *onNode) ReadKey(_ context.Context, _, rel string) ([]byte, error) {
	d.reads++
	return append([]byte(nil), d.files[rel]...), nil
}

func (d *onNode) AuditKeys(context.Context, string) ([]AuditEntry, error) {
	var out []AuditEntry
	for p, b := range d.files {
		out = append(out, Judge(Entry{Path: p, Type: TypeFile, Mode: 0o600}, b))
	}
	return out, nil
}

// A guarded driver reads only the keys the run recorded; everything else stays on the node,
// and an audit that would have to read the files here is refused rather than done.
func TestGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	foreign, own := []byte("FOREIGN-KEY-BYTES\n"), []byte("OWN-KEY-BYTES\n")
	base := &onNode{files: map[string][]byte{"customer/prod.pem": foreign, "synced/ks.pem": own}}
	owned := &OwnedKeys{}
	owned.Add(own)
	d := Guard(New(Config{Base: base}), owned)

	got, err := d.ReadKey(ctx, "n1", "synced/ks.pem")
	if err != nil || string(got) != string(own) {
		t.Fatalf("ReadKey(own) = %q, %v", got, err)
	}
	tests := []struct {
		path   string
		wantIs error
	}{
		{"customer/prod.pem", ErrNotOwned},
		{"customer/none.pem", os.ErrNotExist},
	}
	for _, tc := range tests {
		reads := base.reads
		got, err := d.ReadKey(ctx, "n1", tc.path)
		if !errors.Is(err, tc.wantIs) || got != nil || base.reads != reads {
			t.Errorf("ReadKey(%s) = %q, %v (reads %d→%d); want nothing, %v, no read", tc.path, got, err, reads, base.reads, tc.wantIs)
		}
	}
	entries, err := d.(Auditor).AuditKeys(ctx, "n1")
	if err != nil || len(entries) != 2 || strings.Contains(fmt.Sprintf("%+v", entries), "FOREIGN") {
		t.Errorf("AuditKeys = %+v, %v", entries, err)
	}

	// List and read hooks without an audit hook: the audit would read every file here.
	marker := filepath.Join(t.TempDir(), "read")
	c := NewConfig()
	c.Stderr = nil
	c.ListKeysCmd = ParseCommand(`f() { echo "file 0600 18 customer/prod.pem"; }; f`)
	c.ReadKeyCmd = ParseCommand(`f() { touch ` + marker + `; printf 'FOREIGN-KEY-BYTES\n'; }; f`)
	hd := Guard(New(c), owned)
	for name, call := range map[string]func() (any, error){
		"AuditKeys (nodedriver.AuditKeys)": func() (any, error) { return AuditKeys(ctx, hd.(KeyReader), "n1") },
		"ReadKey":                          func() (any, error) { return hd.ReadKey(ctx, "n1", "customer/prod.pem") },
	} {
		got, err := call()
		if err == nil || !strings.Contains(err.Error(), "--hook-audit-keys") || strings.Contains(fmt.Sprintf("%+v", got), "FOREIGN") {
			t.Errorf("%s = %+v, %v; want an error naming --hook-audit-keys", name, got, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the read-key hook ran: a foreign key's bytes reached the runner")
	}
}
