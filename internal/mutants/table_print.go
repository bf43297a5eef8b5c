package mutants

import (
	"fmt"
	"io"
	"strings"
)

// PrintTable writes one row per result (a Markdown table) and the final line
// "mutants: K/N killed" (the reference row is not counted).
func PrintTable(w io.Writer, results []Result) (killed, total int) {
	fmt.Fprintln(w, "| mutant | defect | expected to catch it | failed (first failure) | killed |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range results {
		verdict := "no"
		switch {
		case r.Err != nil:
			verdict = "error: " + oneLine(r.Err.Error())
		case r.Killed() && !r.ByExpected() && r.Mutant.Name != Reference:
			verdict = "yes (unexpected feature)"
		case r.Killed():
			verdict = "yes"
		}
		failed := "—"
		if fs := r.FailedFeatures(); len(fs) > 0 {
			first := r.Failures[0]
			failed = fmt.Sprintf("%s (%s%s)", strings.Join(fs, "; "), stepPrefix(first.Step), oneLine(first.Message))
		}
		expect := strings.Join(r.Mutant.Expect, "; ")
		if r.Mutant.Name == Reference {
			expect = "none"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.Mutant.Name, r.Mutant.Defect, expect, esc(failed), esc(verdict))
		if r.Mutant.Name == Reference {
			continue
		}
		total++
		if r.Killed() {
			killed++
		}
	}
	fmt.Fprintf(w, "mutants: %d/%d killed\n", killed, total)
	return killed, total
}

func stepPrefix(step string) string {
	if step == "" {
		return "setup: "
	}
	return step + ": "
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 400 {
		s = string(r[:400]) + "…"
	}
	return s
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
