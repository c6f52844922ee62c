//go:build linux

package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// TableWidth is the width the table fits in, in columns.
const TableWidth = 120

// tableColumns are the headers of WriteTable; numbers are right-aligned.
var tableColumns = []struct {
	name  string
	right bool
}{
	{"METRIC", false}, {"VALUE", true}, {"MEAN", true}, {"P99", true}, {"RATIO", true}, {"VS", false},
	{"TARGET", false}, {"MET", false}, {"!", false},
}

// Indexes of the columns that shrink, in the order they give up width, and
// how narrow they may get.
const (
	colVS     = 5
	colTarget = 6
	minShrunk = 14
)

// WriteTable writes the report as a table that fits TableWidth columns, one
// line per row, then the notes of the rows that have any, then a line on how
// to read it. VALUE is the p50 of the individually timed round trips for a
// latency row, the rate or bandwidth for the others (the unit is the metric
// name's suffix); MEAN is a latency row's bulk mean; RATIO is the row's
// figure over the VS row's (p50s when both have them); TARGET is the goal
// of the open issues, MET whether this run met it; "!" marks a row whose
// p50 is far from the other rows of its transport (see Row.Flag).
func (r *Report) WriteTable(w io.Writer) error {
	cells := [][]string{make([]string, len(tableColumns))}
	for i, c := range tableColumns {
		cells[0][i] = c.name
	}
	for _, x := range r.Rows {
		val, mean, p99 := Human(x.Value), "-", "-"
		if x.Hist != nil && x.Hist.P50 > 0 {
			val, mean, p99 = Human(x.Hist.P50), Human(x.Value), Human(x.Hist.P99)
		}
		switch {
		case x.Error != "":
			val, mean, p99 = "FAILED", "", ""
		case x.Skipped:
			val, mean, p99 = "skipped", "", ""
		}
		ratio, vs := "-", x.CompareTo
		if x.Ratio != 0 {
			ratio = FormatRatio(x.Ratio)
		}
		if vs == "" {
			vs, ratio = "", ""
		}
		met := x.Met
		if met == MetShort {
			met = "SHORT"
		}
		flag := ""
		if x.Flag != "" {
			flag = "!"
		}
		targets := x.targetTexts()
		first := ""
		if len(targets) > 0 {
			first = targets[0]
		}
		cells = append(cells, []string{x.Metric, val, mean, p99, ratio, shortMetric(vs), first, met, flag})
		for _, t := range targets[min(1, len(targets)):] { // one line per further target
			cells = append(cells, []string{"", "", "", "", "", "", t, "", ""})
		}
	}
	widths := columnWidths(cells)
	// The TARGET column gives way first (a target naming another row than
	// VS is written in full in the notes), then VS.
	for _, col := range []int{colTarget, colVS} {
		if over := totalWidth(widths) - TableWidth; over > 0 {
			widths[col] = max(minShrunk, widths[col]-over)
		}
	}
	for _, row := range cells {
		var b strings.Builder
		for i, c := range row {
			c = truncate(c, widths[i])
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if tableColumns[i].right {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(b.String(), " ")); err != nil {
			return err
		}
	}
	if err := r.writeNotes(w); err != nil {
		return err
	}
	return r.writeFooter(w)
}

// targetTexts writes the row's targets for the TARGET column, one each.
func (x *Row) targetTexts() []string {
	var parts []string
	for _, t := range x.Targets {
		parts = append(parts, t.Text(x.CompareTo))
	}
	return parts
}

// targetText writes the row's targets on one line (CSV).
func (x *Row) targetText() string { return strings.Join(x.targetTexts(), ", ") }

// unitSuffixes end metric names; the VS column leaves them out, as the row
// compared has the same unit.
var unitSuffixes = []string{"_ns", "_msgs", "_ops", "_gbps", "_percent"}

// shortMetric is a metric name without its unit suffix.
func shortMetric(m string) string {
	for _, s := range unitSuffixes {
		if t, ok := strings.CutSuffix(m, s); ok && t != "" {
			return t
		}
	}
	return m
}

func columnWidths(cells [][]string) []int {
	w := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	return w
}

func totalWidth(w []int) int {
	n := 2 * (len(w) - 1)
	for _, x := range w {
		n += x
	}
	return n
}

// truncate shortens s to n runes, ending it with "…" when it cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeNotes writes, under the table, each row's note (without what the
// footer says of every row), why it was skipped or failed, the targets the
// table had to cut, and its flag, wrapped to TableWidth.
func (r *Report) writeNotes(w io.Writer) error {
	common := r.commonNotes()
	var lines []string
	for _, x := range r.Rows {
		var parts []string
		for p := range strings.SplitSeq(x.Note, "; ") {
			if p != "" && !slices.Contains(common, p) {
				parts = append(parts, p)
			}
		}
		note := strings.Join(parts, "; ")
		switch {
		case x.Error != "":
			note = join("FAILED: "+x.Error, note)
		case x.Skipped:
			note = "skipped: " + note
		}
		if x.RatioOf == StatValue && x.Hist != nil {
			note = join(note, "ratio of values (the VS row has no percentiles)")
		}
		if x.Met == MetNone && measured(&x) {
			note = join(note, "target not judged: a row it needs is missing, skipped or failed")
		}
		for _, t := range x.Targets {
			if !measured(&x) {
				break
			}
			if t.Vs != "" && t.Vs != x.CompareTo && t.Vs != x.Metric {
				note = join(note, "target "+t.String())
			}
		}
		if x.Flag != "" {
			note = join(note, "! "+x.Flag)
		}
		if note != "" {
			lines = append(lines, wrap(x.Metric+": "+note, TableWidth-2, "    ")...)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w, "\nNotes"); err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, "  "+l); err != nil {
			return err
		}
	}
	return nil
}

// commonNotes returns the parts of notes that the footer states once: the
// repetitions and the pinning of the run.
func (r *Report) commonNotes() []string {
	c := []string{"pinned"}
	if r.Settings.Reps > 1 {
		c = append(c, fmt.Sprintf("median of %d", r.Settings.Reps))
	}
	return c
}

func (r *Report) writeFooter(w io.Writer) error {
	var met, short, unjudged int
	for _, x := range r.Rows {
		switch x.Met {
		case MetPass:
			met++
		case MetShort:
			short++
		case MetNone:
			unjudged++
		}
	}
	how := "unpinned"
	if r.Settings.Pin {
		how = "the two processes of a pair pinned to different CPUs"
	}
	reps := ""
	if r.Settings.Reps > 1 {
		reps = fmt.Sprintf(", medians of %d repetitions", r.Settings.Reps)
	}
	s := fmt.Sprintf("%d rows in %.1fs on %d CPUs (%s), %s%s. VALUE: p50 of round trips timed one by one (ns), "+
		"or the rate; MEAN: bulk mean; RATIO = VALUE / the VS row's (named without its unit), both from this run. "+
		"Targets: %d met, %d short",
		len(r.Rows), r.Elapsed, r.Host.CPUs, r.Host.GoVersion, how, reps, met, short)
	if unjudged > 0 {
		s += fmt.Sprintf(", %d not judged", unjudged)
	}
	s += "."
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	for _, l := range wrap(s, TableWidth, "") {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// wrap cuts s into lines of at most width runes at spaces, indenting the
// lines after the first.
func wrap(s string, width int, indent string) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width:
			lines = append(lines, line)
			line = indent + word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
