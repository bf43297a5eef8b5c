package report

import (
	"fmt"
	"html/template"
	"io"
	"time"
)

// htmlArea is one area's section of the HTML report.
type htmlArea struct {
	Name     string
	Tallies  []htmlTally
	Features []htmlFeature
}

type htmlTally struct {
	Profile string
	Tally
}

type htmlFeature struct {
	Name   string
	Checks []Case
	Worst  Status
}

type htmlDoc struct {
	Meta
	Generated      string
	Summary        string
	ProfileSummary string
	Tallies        []htmlTally
	Areas          []htmlArea
}

// WriteHTML writes one static, self-contained HTML page (no script, no outside resource):
// which synchronizer was judged, the per-profile counts, then the features by area with each
// check's profile, verdict, time, message and diagnostics. Everything is escaped
// (html/template).
func WriteHTML(w io.Writer, m Meta, cases []Case, generated time.Time) error {
	doc := htmlDoc{Meta: m, Summary: Summary(cases), ProfileSummary: ProfileSummary(cases)}
	if !generated.IsZero() {
		doc.Generated = generated.UTC().Format(time.RFC3339)
	}
	by := ByProfile(cases)
	doc.Tallies = []htmlTally{{ProfileRequired, by[ProfileRequired]}, {ProfileRecommended, by[ProfileRecommended]}}
	areaIdx := map[string]int{}
	featIdx := map[string]map[string]int{}
	for _, c := range cases {
		an := c.Area
		if an == "" {
			an = "other"
		}
		ai, ok := areaIdx[an]
		if !ok {
			ai = len(doc.Areas)
			areaIdx[an] = ai
			featIdx[an] = map[string]int{}
			doc.Areas = append(doc.Areas, htmlArea{Name: an})
		}
		a := &doc.Areas[ai]
		fi, ok := featIdx[an][c.Suite]
		if !ok {
			fi = len(a.Features)
			featIdx[an][c.Suite] = fi
			a.Features = append(a.Features, htmlFeature{Name: c.Suite, Worst: Skipped})
		}
		f := &a.Features[fi]
		f.Checks = append(f.Checks, c)
		f.Worst = worse(f.Worst, c.Status)
	}
	for i := range doc.Areas {
		var all []Case
		for _, f := range doc.Areas[i].Features {
			all = append(all, f.Checks...)
		}
		ab := ByProfile(all)
		doc.Areas[i].Tallies = []htmlTally{{ProfileRequired, ab[ProfileRequired]}, {ProfileRecommended, ab[ProfileRecommended]}}
	}
	if err := htmlTemplate.Execute(w, doc); err != nil {
		return fmt.Errorf("failed to write HTML report: %w", err)
	}
	return nil
}

// worse orders verdicts for a feature's headline: fail > warn > pass > skip.
func worse(a, b Status) Status {
	rank := map[Status]int{Skipped: 0, Passed: 1, Warned: 2, Failed: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"secs":    func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) },
	"profile": ProfileOf,
	"verdict": func(s Status) string {
		return map[Status]string{Passed: "PASS", Failed: "FAIL", Skipped: "SKIP", Warned: "WARN"}[s]
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}: {{.SynchronizerOrUnknown}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;max-width:75rem}
h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem;border-bottom:1px solid #ccc}
h3{font-size:1rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
.v{font-weight:700;font-family:monospace}.pass{color:#17692c}.fail{color:#b3261e}.warn{color:#8a5a00}.skip{color:#666}
.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;border:1px solid #999}
.required{background:#e8eefc;border-color:#6b8bd6}.recommended{background:#f3ecfa;border-color:#9b7bc4}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.5rem;margin:.3rem 0;font-size:.8rem;max-height:30rem;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:.5rem 0}dt{font-weight:600}dd{margin:0}
.summary{font-family:monospace;font-size:.95rem}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<dl>
<dt>Synchronizer judged</dt><dd id="synchronizer">{{.SynchronizerOrUnknown}}</dd>
{{- if .Lab}}<dt>Lab</dt><dd>{{.Lab}}</dd>{{end}}
{{- if .Profile}}<dt>Profile</dt><dd>{{.Profile}}{{if eq .Profile "required"}} (a failed recommended check is a warning){{end}}</dd>{{end}}
{{- if .Generated}}<dt>Generated</dt><dd>{{.Generated}}</dd>{{end}}
</dl>
<p class="summary" id="summary">{{.ProfileSummary}}<br>{{.Summary}}</p>
{{- with .NotSelectedLine}}
<details id="not-selected"><summary>{{.}}</summary><ul>{{range $.NotSelected}}<li>{{.}}</li>{{end}}{{range $.NotSelectedChecks}}<li>{{.}}</li>{{end}}</ul></details>{{end}}
<table id="tallies"><tr><th>profile</th><th>passed</th><th>warned</th><th>failed</th><th>skipped</th></tr>
{{- range .Tallies}}<tr><td><span class="badge {{.Profile}}">{{.Profile}}</span></td><td>{{.Passed}}</td><td>{{.Warned}}</td><td>{{.Failed}}</td><td>{{.Skipped}}</td></tr>{{end}}
</table>
{{range .Areas}}<section class="area" id="area-{{.Name}}">
<h2>area {{.Name}}</h2>
<p>{{range $i, $t := .Tallies}}{{if $i}}; {{end}}{{$t.Profile}}: {{$t.Passed}} passed, {{$t.Warned}} warned, {{$t.Failed}} failed, {{$t.Skipped}} skipped{{end}}</p>
{{range .Features}}<div class="feature">
<h3><span class="v {{.Worst}}">{{verdict .Worst}}</span> {{.Name}}</h3>
<table><tr><th>verdict</th><th>check</th><th>profile</th><th>time</th></tr>
{{range .Checks}}<tr class="check check-{{.Status}}"><td class="v {{.Status}}">{{verdict .Status}}</td><td>{{.Name}}
{{- if and .Message (ne (print .Status) "pass")}}<pre class="message">{{.Message}}</pre>{{end}}
{{- if .Diagnostics}}<details><summary>diagnostics</summary><pre class="diagnostics">{{.Diagnostics}}</pre></details>{{end}}</td>
<td><span class="badge {{profile .}}">{{profile .}}</span></td><td>{{secs .Duration}}</td></tr>
{{end}}</table>
</div>
{{end}}</section>
{{end}}</body>
</html>
`))
