//go:build linux

package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/shmex/shmex/bench"
)

// writePlot draws the report as a PNG or an SVG (by the file's extension):
// first the payload sweep, round-trip latency against payload size for every
// transport on log-log axes; then one panel per kind of unit (round trips in
// ns on a log scale with their p50-p99 and p99.9 spread, rates on a log
// scale, bandwidths), one line per measured metric, labelled with the value
// and the ratio to what it is compared with.
func writePlot(r *bench.Report, file string) error {
	ext := strings.ToLower(filepath.Ext(file))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("plot: %s: only .png and .svg are supported", file)
	}
	panels := []struct {
		title, xlabel string
		units         []string
		log           bool
	}{
		{"Round trips (dot: p50; ring: mean; thick: p50 to p99; thin: to p99.9)", "round trip, ns (log)", []string{"ns"}, true},
		{"Rates", "messages or operations per second (log)", []string{"msgs/s", "ops/s"}, true},
		{"Bandwidth", "GB/s (10^9 bytes per second)", []string{"GB/s"}, false},
		{"Other", "percent of one CPU", []string{"%"}, false},
	}
	var plots []drawer
	var heights []vg.Length
	const width = 11 * vg.Inch
	rowH, extra := 0.42*vg.Inch, 1.1*vg.Inch
	if p, ok, err := sweepPanel(r.Rows); err != nil {
		return err
	} else if ok {
		plots = append(plots, p)
		heights = append(heights, 6.5*vg.Inch)
	}
	for _, pn := range panels {
		var rows []bench.Row
		for _, x := range r.Rows {
			if x.Error == "" && !x.Skipped && x.Value > 0 && x.Series == "" && slices.Contains(pn.units, x.Unit) {
				rows = append(rows, x)
			}
		}
		if len(rows) == 0 {
			continue
		}
		p, err := panel(pn.title, pn.xlabel, pn.log, rows)
		if err != nil {
			return err
		}
		plots = append(plots, p)
		heights = append(heights, vg.Length(len(rows))*rowH+extra)
	}
	if len(plots) == 0 {
		return fmt.Errorf("plot: no measured row to draw")
	}
	var total vg.Length
	for _, h := range heights {
		total += h
	}
	var canvas vg.CanvasWriterTo
	if ext == ".svg" {
		canvas = vgsvg.New(width, total)
	} else {
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(width, total)}
	}
	dc := draw.New(canvas)
	top := total
	for i, p := range plots {
		h := heights[i]
		c := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: 0, Y: top - h}, Max: vg.Point{X: width, Y: top}}}
		p.Draw(draw.Crop(c, vg.Points(12), -vg.Points(6), vg.Points(4), -vg.Points(6)))
		top -= h
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawer is a panel of the figure.
type drawer interface{ Draw(draw.Canvas) }

// legendWidth is the strip right of the sweep's data that holds its legend.
const legendWidth = 1.5 * vg.Inch

// sweepFigure is the sweep's plot with its legend in a strip to the right
// of the data, where it hides no line.
type sweepFigure struct {
	p      *plot.Plot
	legend plot.Legend
}

// Draw implements drawer.
func (f sweepFigure) Draw(c draw.Canvas) {
	data := c
	data.Max.X -= legendWidth
	f.p.Draw(data)
	strip := c
	strip.Min.X = data.Max.X + vg.Points(8)
	strip.Max.Y -= vg.Points(40) // below the title's height
	f.legend.Draw(strip)
}

// sweepPanel draws the payload-sweep rows: median round trip against
// payload size, one line per transport, log-log, the legend beside the
// data. ok is false when the report has no sweep row.
func sweepPanel(rows []bench.Row) (f drawer, ok bool, err error) {
	series := map[string]plotter.XYs{}
	var order []string
	for _, x := range rows {
		if x.Series == "" || x.Bytes <= 0 || x.Error != "" || x.Skipped || x.Value <= 0 {
			continue
		}
		y := x.Value
		if x.Hist != nil && x.Hist.P50 > 0 {
			y = x.Hist.P50
		}
		if _, seen := series[x.Series]; !seen {
			order = append(order, x.Series)
		}
		series[x.Series] = append(series[x.Series], plotter.XY{X: float64(x.Bytes), Y: y})
	}
	if len(order) == 0 {
		return nil, false, nil
	}
	p := plot.New()
	p.Title.Text = "Round trip against payload size (p50; the request carries the payload, the answer 64 B)"
	p.X.Label.Text = "payload, bytes (log)"
	p.Y.Label.Text = "round trip, ns (log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = bytesTicks{}, humanLogTicks{}
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	for i, s := range order {
		l, pts, err := plotter.NewLinePoints(series[s])
		if err != nil {
			return nil, false, err
		}
		c := plotutil.Color(i)
		l.Color, pts.Color = c, c
		pts.Shape = plotutil.Shape(i)
		p.Add(l, pts)
		legend.Add(s, l, pts)
	}
	return sweepFigure{p: p, legend: legend}, true, nil
}

// panel draws rows top to bottom in report order.
func panel(title, xlabel string, logScale bool, rows []bench.Row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "metric"
	p.Add(plotter.NewGrid())
	n := len(rows)
	names := make([]string, n)
	marks := make(plotter.XYs, n)
	var means plotter.XYs
	labels := plotter.XYLabels{XYs: make(plotter.XYs, n), Labels: make([]string, n)}
	spread := &spreads{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, x := range rows {
		y := float64(n - 1 - i)
		names[n-1-i] = x.Metric
		v := x.Value
		if x.Hist != nil && x.Hist.P50 > 0 {
			v = x.Hist.P50
			means = append(means, plotter.XY{X: x.Value, Y: y})
		}
		marks[i] = plotter.XY{X: v, Y: y}
		text := bench.Human(v) + " " + x.Unit
		if x.Ratio != 0 {
			text += fmt.Sprintf("  (%s %s)", bench.FormatRatio(x.Ratio), x.CompareTo)
		}
		if x.Met != "" && x.Met != bench.MetNone {
			text += "  target " + x.Met
		}
		if x.Flag != "" {
			text += "  ! placement"
		}
		labels.XYs[i] = plotter.XY{X: v, Y: y}
		labels.Labels[i] = text
		lo, hi = math.Min(lo, math.Min(v, x.Value)), math.Max(hi, math.Max(v, x.Value))
		if h := x.Hist; h != nil && h.P50 > 0 {
			spread.rows = append(spread.rows, spreadRow{y: y, p50: h.P50, p99: h.P99, p999: h.P999})
			lo, hi = math.Min(lo, h.P50), math.Max(hi, h.P999)
		}
	}
	if len(spread.rows) > 0 {
		p.Add(spread)
	}
	sc, err := plotter.NewScatter(marks)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Shape = draw.CircleGlyph{}
	sc.GlyphStyle.Radius = vg.Points(3.5)
	p.Add(sc)
	if len(means) > 0 {
		ms, err := plotter.NewScatter(means)
		if err != nil {
			return nil, err
		}
		ms.GlyphStyle.Shape = draw.RingGlyph{}
		ms.GlyphStyle.Radius = vg.Points(4)
		ms.GlyphStyle.Color = color.RGBA{R: 200, G: 60, B: 40, A: 255}
		p.Add(ms)
	}
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XLeft
		lb.TextStyle[i].YAlign = draw.YBottom
	}
	lb.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(3)}
	p.Add(lb)
	p.NominalY(names...)
	p.Y.Min, p.Y.Max = -0.6, float64(n)-0.4
	if logScale {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = humanLogTicks{}
		p.X.Min = math.Pow(10, math.Floor(math.Log10(lo)))
		p.X.Max = math.Pow(10, math.Ceil(math.Log10(hi))+0.7) // room for the labels
	} else {
		p.X.Min, p.X.Max = 0, hi*1.8
		p.X.Tick.Marker = plainTicks{}
	}
	return p, nil
}

// humanLogTicks are log-scale ticks at powers of ten, labelled with the
// same suffixes everywhere: 1, 10, 100, 1k, 10k, 100k, 1M, 10M, 1G.
type humanLogTicks struct{}

// Ticks implements plot.Ticker.
func (humanLogTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.LogTicks{Prec: -1}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = siLabel(ticks[i].Value)
		}
	}
	return ticks
}

// siLabel writes a power of ten with a k, M or G suffix.
func siLabel(v float64) string {
	for _, u := range []struct {
		f float64
		s string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.f {
			return strconv.FormatFloat(v/u.f, 'g', 3, 64) + u.s
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// plainTicks are linear ticks labelled without trailing zeros (0, 0.2, 10).
type plainTicks struct{}

// Ticks implements plot.Ticker.
func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 4, 64)
		}
	}
	return ticks
}

// bytesTicks are log-scale ticks for sizes in bytes at powers of four,
// labelled as the rows name sizes: 64B, 256B, 1KiB, 4KiB, ... 1GiB.
type bytesTicks struct{}

// Ticks implements plot.Ticker.
func (bytesTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for v := 1.0; v <= hi*1.0001; v *= 4 {
		if v >= lo*0.9999 {
			ticks = append(ticks, plot.Tick{Value: v, Label: sizeLabel(int64(v))})
		}
	}
	return ticks
}

// sizeLabel writes a power of two as 64B, 1KiB, 4MiB, 1GiB.
func sizeLabel(n int64) string {
	for _, u := range []struct {
		f int64
		s string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.f && n%u.f == 0 {
			return strconv.FormatInt(n/u.f, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// spreads draws, for each latency row, a thin line from p50 to p99.9 and a
// thick one from p50 to p99.
type spreads struct{ rows []spreadRow }

type spreadRow struct{ y, p50, p99, p999 float64 }

// Plot implements plot.Plotter.
func (s *spreads) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	thin := draw.LineStyle{Color: color.Gray{Y: 150}, Width: vg.Points(1)}
	thick := draw.LineStyle{Color: color.RGBA{R: 60, G: 110, B: 200, A: 255}, Width: vg.Points(6)}
	for _, r := range s.rows {
		y := trY(r.y)
		c.StrokeLines(thin, c.ClipLinesX([]vg.Point{{X: trX(r.p50), Y: y}, {X: trX(r.p999), Y: y}})...)
		c.StrokeLines(thick, c.ClipLinesX([]vg.Point{{X: trX(r.p50), Y: y}, {X: trX(r.p99), Y: y}})...)
	}
}
