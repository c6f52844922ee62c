//go:build linux

package bench

import (
	"fmt"
	"strings"
)

// Target is a goal of an issue for one row, judged within one run: the
// row's figure (Stat) at most or at least Factor times the figure of the row
// named in Vs, plus Plus; or, with Vs empty, at most or at least Factor in
// the row's unit. Scenarios declare their rows' targets in Scenario.Targets,
// next to the rows; the table shows them in its TARGET column and says in
// MET whether this run met them.
type Target struct {
	// Metric is the row judged.
	Metric string `json:"metric"`
	// Stat is the figure of the row judged; empty: the p50 when the row
	// (and the Vs row, if any) have percentiles, else the value.
	Stat Stat `json:"stat,omitempty"`
	// Op says whether the figure must stay at most or at least the bound.
	Op Op `json:"op"`
	// Factor multiplies the Vs row's figure; with Vs empty it is the
	// bound itself.
	Factor float64 `json:"factor"`
	// Vs is the reference row, measured in the same run; it may be Metric
	// itself (a p99 at most 3x the row's own p50).
	Vs string `json:"vs,omitempty"`
	// VsStat is the figure of the Vs row; empty: as for Stat.
	VsStat Stat `json:"vs_stat,omitempty"`
	// Plus is added to the bound, in the row's unit (p50 + 300 ns).
	Plus float64 `json:"plus,omitempty"`
	// Issue is the number of the issue that set the target.
	Issue int `json:"issue,omitempty"`
}

// Op is the direction of a Target.
type Op string

// Directions of a target.
const (
	AtMost  Op = "<=" // the figure must not exceed the bound
	AtLeast Op = ">=" // the figure must reach the bound
)

// Stat names a figure of a row.
type Stat string

// Figures of a row.
const (
	StatAuto  Stat = ""      // p50 when the rows compared have percentiles, else the value
	StatP50   Stat = "p50"   // Hist.P50
	StatP99   Stat = "p99"   // Hist.P99
	StatValue Stat = "value" // Value (the bulk mean of a latency row)
)

// Verdicts of Row.Met.
const (
	MetPass  = "pass"  // every target of the row met
	MetShort = "short" // a target missed
	MetNone  = "-"     // not judged: the row or a reference missing, skipped or failed
)

// figure returns the row's stat, resolving StatAuto against the other row
// of the comparison (nil when there is none): the p50 when both have one.
func figure(r *Row, s Stat, other *Row) (float64, Stat) {
	hasP50 := func(x *Row) bool { return x == nil || x.Hist != nil && x.Hist.P50 > 0 }
	if s == StatAuto {
		s = StatValue
		if r.Hist != nil && r.Hist.P50 > 0 && hasP50(other) {
			s = StatP50
		}
	}
	switch s {
	case StatP50, StatP99:
		if r.Hist == nil {
			return 0, s
		}
		if s == StatP50 {
			return r.Hist.P50, s
		}
		return r.Hist.P99, s
	}
	return r.Value, StatValue
}

// measured reports whether a row has a figure to judge.
func measured(r *Row) bool { return r != nil && !r.Skipped && r.Error == "" && r.Value != 0 }

// judge evaluates t against the rows of a run: met, and judged (false when
// a row it needs is missing, skipped, failed or without the figure).
func (t Target) judge(rows map[string]*Row) (met, judged bool) {
	r := rows[t.Metric]
	if !measured(r) {
		return false, false
	}
	bound := t.Factor
	var vs *Row
	if t.Vs != "" {
		if vs = rows[t.Vs]; !measured(vs) {
			return false, false
		}
		if vs == r {
			vs = nil // the row's own figures: StatAuto needs no partner
		}
	}
	v, _ := figure(r, t.Stat, vs)
	if v == 0 {
		return false, false
	}
	if t.Vs != "" {
		ref := r
		if vs != nil {
			ref = vs
		}
		rv, _ := figure(ref, t.VsStat, r)
		if rv == 0 {
			return false, false
		}
		bound = t.Factor*rv + t.Plus
	} else {
		bound += t.Plus
	}
	if t.Op == AtLeast {
		return v >= bound, true
	}
	return v <= bound, true
}

// Text writes the target for the table, short where the row's VS column
// already names the reference: "≤ 2x", "≤ VS+300", "≥ 1.5M", "p99 ≤ 3x p50",
// "≤ 0.5x iceoryx.rtt_reqresp_poll" (another reference, without its unit).
func (t Target) Text(compareTo string) string { return t.text(compareTo, false) }

// text writes the target; full keeps the unit suffix of a reference's name.
func (t Target) text(compareTo string, full bool) string {
	var b strings.Builder
	if t.Stat != StatAuto && t.Stat != StatP50 {
		b.WriteString(string(t.Stat) + " ")
	}
	if t.Op == AtLeast {
		b.WriteString("≥ ")
	} else {
		b.WriteString("≤ ")
	}
	plus := ""
	if t.Plus != 0 {
		plus = fmt.Sprintf("%+g", t.Plus)
	}
	switch {
	case t.Vs == "":
		b.WriteString(compactHuman(t.Factor + t.Plus))
	case t.Vs == t.Metric:
		vs := t.VsStat
		if vs == StatAuto {
			vs = StatP50
		}
		b.WriteString(compactHuman(t.Factor) + "x " + string(vs) + plus)
	default:
		name := t.Vs
		if !full {
			name = shortMetric(t.Vs)
		}
		if t.Vs == compareTo {
			name = "VS"
		}
		if t.Factor != 1 {
			b.WriteString(compactHuman(t.Factor) + "x")
			if t.Vs != compareTo || plus != "" {
				b.WriteString(" ")
			}
		}
		if t.Factor == 1 || t.Vs != compareTo || plus != "" {
			b.WriteString(name)
		}
		b.WriteString(plus)
	}
	return b.String()
}

// String writes the target in full, for notes and logs.
func (t Target) String() string {
	s := t.Metric + " "
	if t.Stat != StatAuto {
		s += string(t.Stat) + " "
	}
	return s + t.text("", true)
}

// compactHuman is Human without trailing zeros: 2, 0.3, 1.5M.
func compactHuman(v float64) string {
	h := Human(v)
	num := strings.TrimRight(h, "kMG")
	if strings.Contains(num, ".") {
		num = strings.TrimRight(strings.TrimRight(num, "0"), ".")
	}
	return num + h[len(strings.TrimRight(h, "kMG")):]
}
