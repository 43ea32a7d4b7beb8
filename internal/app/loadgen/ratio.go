package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// A Measure is one figure of a ratio bench, taken once per run: a path
// of Tani, or a reference (a floor) measured on the same machine in the
// same run. Its value is a rate: higher is better.
type Measure struct {
	Name string // short and unique within a bench: "capture", "copy"
	Desc string // what is measured, one line for the report
	Unit string // of Sample.Value, e.g. "records/s"
	// Run takes the figure once; run counts from 0. It sets up whatever
	// it needs before its clock starts and removes it afterwards.
	Run func(ctx context.Context, run int) (Sample, error)
}

// Sample is one run of a Measure.
type Sample struct {
	Value float64
	// Side are figures taken in the same run that have a bound of their
	// own (the /sync p99 of a capture run).
	Side []Side
}

// Side is a figure taken beside a Measure's value. Max, when positive,
// is the most the goal allows.
type Side struct {
	Name, Unit string
	Value      float64
	Max        float64
}

// Ratio compares two measures run by run: Num's value over Den's value
// of the same run. Goal, when positive, is the least median it must reach.
type Ratio struct {
	Num, Den string
	Goal     float64
}

// Bench is a set of measures and the ratios between them. Paths of Tani
// and the references they are held to are run in the same invocation,
// interleaved, so that whatever else the machine does weighs on both:
// on a shared machine absolute figures move by a factor of two from one
// minute to the next, a ratio measured minutes apart means nothing, and a
// ratio of the same run does.
//
// A figure is added with Add and compared with Compare; anything that can
// be measured as a rate fits (the capture path against COPY here, the
// journal against a reference log).
type Bench struct {
	measures []Measure
	ratios   []Ratio
}

// Add adds measures; their names must be unique.
func (b *Bench) Add(ms ...Measure) { b.measures = append(b.measures, ms...) }

// Compare adds the ratio num/den, paired run by run, with the least median
// the goal asks for (0: none).
func (b *Bench) Compare(num, den string, goal float64) {
	b.ratios = append(b.ratios, Ratio{Num: num, Den: den, Goal: goal})
}

// Validate refuses a bench that cannot run: no measure, a duplicate name,
// or a ratio naming a measure the bench lacks.
func (b *Bench) Validate() error {
	var errs []error
	if len(b.measures) == 0 {
		errs = append(errs, errors.New("no measure to run"))
	}
	seen := map[string]bool{}
	for _, m := range b.measures {
		if m.Name == "" || m.Run == nil {
			errs = append(errs, fmt.Errorf("measure %q needs a name and a Run", m.Name))
		}
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("two measures are named %q", m.Name))
		}
		seen[m.Name] = true
	}
	for _, r := range b.ratios {
		for _, n := range []string{r.Num, r.Den} {
			if !seen[n] {
				errs = append(errs, fmt.Errorf("ratio %s/%s names no measure %q", r.Num, r.Den, n))
			}
		}
	}
	return errors.Join(errs...)
}

// Run takes every measure runs times. Runs are interleaved: run r takes
// each measure once, starting at measure r mod n, so that no measure is
// always the first (on a fresh machine) or the last (after the others
// warmed the database). Each sample is written to progress as it is
// taken. It stops at the first measure that fails and returns what was
// measured until then with the error.
func (b *Bench) Run(ctx context.Context, runs int, progress io.Writer) (*Results, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if runs < 1 {
		return nil, fmt.Errorf("runs %d must be at least 1", runs)
	}
	res := &Results{Runs: runs, Measures: slices.Clone(b.measures), Ratios: slices.Clone(b.ratios), Samples: map[string][]Sample{}}
	n := len(b.measures)
	for r := range runs {
		for k := range n {
			m := b.measures[(r+k)%n]
			start := time.Now()
			s, err := m.Run(ctx, r)
			if err != nil {
				return res, fmt.Errorf("run %d, %s: %w", r+1, m.Name, err)
			}
			res.Samples[m.Name] = append(res.Samples[m.Name], s)
			fmt.Fprintf(progress, "run %d/%d  %-10s %10s %s%s  (took %s%s)\n", r+1, runs, m.Name, grouped(s.Value), m.Unit, sideText(s.Side), time.Since(start).Round(time.Second), loadAverage())
		}
	}
	return res, nil
}

// Results are a bench's samples, run by run.
type Results struct {
	Runs     int
	Measures []Measure
	Ratios   []Ratio
	Samples  map[string][]Sample // by measure name, in run order
}

// Spread is the minimum, median and maximum of a figure over the runs.
type Spread struct{ Min, Median, Max float64 }

// spread computes a Spread; the median of an even count is the mean of
// the middle two.
func spread(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{s[0], med, s[len(s)-1]}
}

// Values returns a measure's value run by run.
func (r *Results) Values(name string) []float64 {
	var out []float64
	for _, s := range r.Samples[name] {
		out = append(out, s.Value)
	}
	return out
}

// RatioValues returns num/den run by run: each run's Tani figure over the
// reference measured in the same run.
func (r *Results) RatioValues(ratio Ratio) []float64 {
	num, den := r.Values(ratio.Num), r.Values(ratio.Den)
	out := make([]float64, 0, min(len(num), len(den)))
	for i := range min(len(num), len(den)) {
		out = append(out, num[i]/den[i])
	}
	return out
}

// Short lists the goals whose median was not reached: ratios under
// their goal, side figures over their bound.
func (r *Results) Short() []string {
	var out []string
	for _, ratio := range r.Ratios {
		if s := spread(r.RatioValues(ratio)); ratio.Goal > 0 && !(s.Median >= ratio.Goal) {
			out = append(out, fmt.Sprintf("%s/%s median %.3f < %.2f", ratio.Num, ratio.Den, s.Median, ratio.Goal))
		}
	}
	for _, side := range r.sides() {
		if s := spread(side.values); side.max > 0 && !(s.Median <= side.max) {
			out = append(out, fmt.Sprintf("%s %s median %s > %s %s", side.measure, side.name, grouped(s.Median), grouped(side.max), side.unit))
		}
	}
	return out
}

type sideSeries struct {
	measure, name, unit string
	max                 float64
	values              []float64
}

// sides gathers the side figures of every measure, by name, in order of
// first appearance.
func (r *Results) sides() []sideSeries {
	var out []sideSeries
	for _, m := range r.Measures {
		index := map[string]int{}
		for _, s := range r.Samples[m.Name] {
			for _, f := range s.Side {
				i, ok := index[f.Name]
				if !ok {
					i = len(out)
					index[f.Name] = i
					out = append(out, sideSeries{measure: m.Name, name: f.Name, unit: f.Unit, max: f.Max})
				}
				out[i].values = append(out[i].values, f.Value)
			}
		}
	}
	return out
}

// Write prints the figures run by run, then min/median/max of every
// measure, side figure and ratio, with the goals.
func (r *Results) Write(w io.Writer) {
	// Figures align right; names are padded to one width, so they read
	// as aligned left.
	var names []string
	for _, m := range r.Measures {
		names = append(names, m.Name)
	}
	for _, s := range r.sides() {
		names = append(names, s.measure+" "+s.name)
	}
	for _, ratio := range r.Ratios {
		names = append(names, ratio.Num+" / "+ratio.Den)
	}
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	name := func(n string) string { return n + strings.Repeat(" ", width-len(n)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	defer tw.Flush()
	header := name("") + "\tunit\t"
	for i := range r.Runs {
		header += fmt.Sprintf("run %d\t", i+1)
	}
	fmt.Fprintln(tw, header+"min\tmedian\tmax\tgoal\t")
	for _, m := range r.Measures {
		vals := r.Values(m.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t\t\n", name(m.Name), m.Unit, cells(vals, r.Runs, grouped), spreadCells(spread(vals), grouped))
	}
	for _, s := range r.sides() {
		goal := ""
		if s.max > 0 {
			goal = "≤ " + grouped(s.max)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%s\t\n", name(s.measure+" "+s.name), s.unit, cells(s.values, r.Runs, grouped), spreadCells(spread(s.values), grouped), goal)
	}
	for _, ratio := range r.Ratios {
		vals := r.RatioValues(ratio)
		goal := ""
		if ratio.Goal > 0 {
			goal = fmt.Sprintf("≥ %.2f", ratio.Goal)
		}
		fmt.Fprintf(tw, "%s\tratio\t%s%s\t%s\t\n", name(ratio.Num+" / "+ratio.Den), cells(vals, r.Runs, ratioText), spreadCells(spread(vals), ratioText), goal)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, m := range r.Measures {
		fmt.Fprintf(w, "%-10s %s\n", m.Name, m.Desc)
	}
	if short := r.Short(); len(short) > 0 {
		fmt.Fprintf(w, "\nshort of the goals: %s\n", strings.Join(short, "; "))
	} else if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nevery goal met at its median")
	}
}

func cells(vals []float64, runs int, format func(float64) string) string {
	var b strings.Builder
	for i := range runs {
		if i < len(vals) {
			b.WriteString(format(vals[i]))
		} else {
			b.WriteString("—")
		}
		b.WriteByte('\t')
	}
	return b.String()
}

func spreadCells(s Spread, format func(float64) string) string {
	return format(s.Min) + "\t" + format(s.Median) + "\t" + format(s.Max) + "\t"
}

func ratioText(x float64) string { return fmt.Sprintf("%.3f", x) }

// grouped prints a figure with thousands separators, with one decimal
// below 100.
func grouped(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "—"
	}
	if math.Abs(x) < 100 {
		return fmt.Sprintf("%.1f", x)
	}
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// loadAverage is the machine's one-minute load average as the progress
// line shows it, or nothing where /proc does not tell: it says how busy
// the machine was with other work while a figure was taken.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return ", load average " + f[0]
}

func sideText(side []Side) string {
	if len(side) == 0 {
		return ""
	}
	parts := make([]string, len(side))
	for i, s := range side {
		parts[i] = fmt.Sprintf("%s %s %s", s.Name, grouped(s.Value), s.Unit)
	}
	return "  (" + strings.Join(parts, ", ") + ")"
}
