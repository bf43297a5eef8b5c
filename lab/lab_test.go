package lab

import (
	"strings"
	"testing"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		s         Status
		wantReady bool
		wantLast  string
	}{
		{name: "all up", s: Status{Kind: "node", Components: []Component{{Name: "crio", Up: true}, {Name: "syncer", Up: true}}},
			wantReady: true, wantLast: "node lab: ready"},
		{name: "one down", s: Status{Kind: "node", Components: []Component{{Name: "crio", Up: true}, {Name: "syncer", Detail: "exited"}}},
			wantLast: "node lab: NOT ready (1 of 2 components down)"},
		{name: "nothing", s: Status{Kind: "kind"}, wantLast: "kind lab: NOT ready (not up)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.s.Ready(); got != tt.wantReady {
				t.Errorf("Ready() = %v, want %v", got, tt.wantReady)
			}
			var b strings.Builder
			if err := tt.s.Write(&b); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if got := lines[len(lines)-1]; got != tt.wantLast {
				t.Errorf("last line = %q, want %q", got, tt.wantLast)
			}
			if len(lines) != len(tt.s.Components)+1 {
				t.Errorf("got %d lines, want one per component and a verdict:\n%s", len(lines), b.String())
			}
		})
	}
}
