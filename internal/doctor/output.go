package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints one line per result ("✗ check: subject: found → fix") and a summary line.
func WriteText(w io.Writer, rep Report) error {
	var b strings.Builder
	for _, r := range rep.Results {
		b.WriteString(r.Status.Glyph() + " " + r.Check + ": ")
		if r.Subject != "" {
			b.WriteString(r.Subject + ": ")
		}
		b.WriteString(r.Found)
		if r.Fix != "" && r.Status != OK {
			b.WriteString(" → " + r.Fix)
		}
		b.WriteString("\n")
	}
	s := rep.Summary
	fmt.Fprintf(&b, "doctor (namespace %s): %d ok, %d warning(s), %d failed, %d skipped\n", rep.Namespace, s.OK, s.Warn, s.Fail, s.Skip)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("failed to write the report: %w", err)
	}
	return nil
}

// WriteJSON prints the report as one indented JSON document (schema Schema).
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("failed to write the report: %w", err)
	}
	return nil
}
