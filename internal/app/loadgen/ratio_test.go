package loadgen

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixed is a measure returning values[run] and noting the order it ran in.
func fixed(name string, order *[]string, values ...float64) Measure {
	return Measure{Name: name, Unit: "records/s", Run: func(_ context.Context, run int) (Sample, error) {
		*order = append(*order, name)
		return Sample{Value: values[run], Side: []Side{{Name: "p99", Unit: "ms", Value: 100 * float64(run+1), Max: 250}}}, nil
	}}
}

func TestBench(t *testing.T) {
	t.Run("OK_InterleavedAndPairedRunByRun", func(t *testing.T) {
		var order []string
		var b Bench
		b.Add(fixed("tani", &order, 10, 30, 20), fixed("floor", &order, 100, 100, 50))
		b.Compare("tani", "floor", 0.25)
		res, err := b.Run(context.Background(), 3, new(strings.Builder))
		if err != nil {
			t.Fatal(err)
		}
		// Each run starts one measure further on: none is always first.
		if diff := cmp.Diff([]string{"tani", "floor", "floor", "tani", "tani", "floor"}, order); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
		// Ratios pair the runs (0.1, 0.3, 0.4), not the medians (20/100).
		ratio := res.RatioValues(Ratio{Num: "tani", Den: "floor"})
		if diff := cmp.Diff([]float64{0.1, 0.3, 0.4}, ratio); diff != "" {
			t.Errorf("ratios (-want +got):\n%s", diff)
		}
		if got, want := spread(ratio), (Spread{0.1, 0.3, 0.4}); got != want {
			t.Errorf("spread = %+v, want %+v", got, want)
		}
		// Median ratio 0.3 meets 0.25; the side figure's median 200 ms
		// is within 250.
		if short := res.Short(); len(short) != 0 {
			t.Errorf("Short() = %q, want every goal met", short)
		}
		var out strings.Builder
		res.Write(&out)
		for _, want := range []string{"tani / floor", "0.100", "0.300", "0.400", "≥ 0.25", "tani p99", "≤ 250", "every goal met"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("OK_ShortOfTheGoalsIsSaid", func(t *testing.T) {
		var order []string
		var b Bench
		b.Add(fixed("tani", &order, 10, 10), fixed("floor", &order, 100, 100))
		b.Compare("tani", "floor", 0.25)
		res, err := b.Run(context.Background(), 2, new(strings.Builder))
		if err != nil {
			t.Fatal(err)
		}
		short := res.Short()
		// Ratio 0.1 < 0.25; p99 median (100+200)/2 = 150 is within 250.
		if len(short) != 1 || !strings.Contains(short[0], "tani/floor median 0.100 < 0.25") {
			t.Errorf("Short() = %q, want the ratio named", short)
		}
	})
	t.Run("ErrMeasureFails", func(t *testing.T) {
		var order []string
		var b Bench
		boom := errors.New("boom")
		b.Add(fixed("tani", &order, 1, 1), Measure{Name: "broken", Run: func(context.Context, int) (Sample, error) { return Sample{}, boom }})
		res, err := b.Run(context.Background(), 2, new(strings.Builder))
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "run 1, broken") {
			t.Errorf("err = %v, want boom named by run and measure", err)
		}
		if res == nil || len(res.Samples["tani"]) != 1 {
			t.Errorf("results = %+v, want what was measured before the failure", res)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		var order []string
		var b Bench
		b.Add(fixed("a", &order, 1), fixed("a", &order, 1))
		b.Compare("a", "missing", 0)
		err := b.Validate()
		for _, want := range []string{`two measures are named "a"`, `names no measure "missing"`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Validate() = %v, want %q", err, want)
			}
		}
		if _, err := b.Run(context.Background(), 1, new(strings.Builder)); err == nil {
			t.Error("Run of an invalid bench succeeded")
		}
	})
}

func TestGrouped(t *testing.T) {
	for in, want := range map[float64]string{12.34: "12.3", 1234: "1,234", 43709.4: "43,709", 1234567: "1,234,567", -2500: "-2,500"} {
		if got := grouped(in); got != want {
			t.Errorf("grouped(%v) = %q, want %q", in, got, want)
		}
	}
}
