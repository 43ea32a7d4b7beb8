package loadgen_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/loadgen"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

func validConfig() loadgen.Config {
	return loadgen.Config{
		URL: "http://127.0.0.1:8080", OperatorToken: "t", Agents: 2, Batch: 50, Records: 200,
		Duration: time.Minute, IngestWait: time.Minute,
	}
}

func TestConfigValidate(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		if err := validConfig().Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	tests := []struct {
		name   string
		change func(*loadgen.Config)
		want   string
	}{
		{"ErrNoToken", func(c *loadgen.Config) { c.OperatorToken = "" }, "no operator token"},
		{"ErrURLNotHTTP", func(c *loadgen.Config) { c.URL = "127.0.0.1:8080" }, "-url"},
		{"ErrNoAgents", func(c *loadgen.Config) { c.Agents = 0 }, "-agents"},
		{"ErrBatchTooBig", func(c *loadgen.Config) { c.Batch = loadgen.MaxBatch + 1 }, "-batch"},
		{"ErrNoRecords", func(c *loadgen.Config) { c.Records = 0 }, "-records"},
		{"ErrNoDuration", func(c *loadgen.Config) { c.Duration = 0 }, "-duration"},
		{"ErrNegativeConcurrency", func(c *loadgen.Config) { c.Concurrency = -1 }, "-concurrency"},
		{"ErrNegativeWarmup", func(c *loadgen.Config) { c.Warmup = -1 }, "-warmup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestRun_ErrWarmupWithoutDatabase refuses a warm-up it could not wait
// for, before it creates anything on the server.
func TestRun_ErrWarmupWithoutDatabase(t *testing.T) {
	cfg := validConfig()
	cfg.URL = "http://127.0.0.1:1" // never dialled
	cfg.Warmup = 10
	if _, err := loadgen.Run(context.Background(), cfg, nil, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "-warmup needs -database.url") {
		t.Errorf("Run = %v, want the warm-up refused for want of a database", err)
	}
}

// TestRun drives a whole process with a tiny load and checks what the
// user of the figures relies on: every accepted record was stored exactly
// once, and the report says so; the warm-up's records are stored too but
// are not part of the timed phase's figures.
func TestRun(t *testing.T) {
	tani := apptest.MustStart(t)
	cfg := validConfig()
	cfg.URL, cfg.OperatorToken = tani.URL, tani.OperatorToken
	cfg.Concurrency = 3
	cfg.Warmup = 120

	report, err := loadgen.Run(context.Background(), cfg, tani.DB, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := report.Err(); err != nil {
		t.Fatalf("report.Err() = %v, want a clean run (errors %q)", err, report.Errors)
	}
	if report.Accepted != cfg.Records || report.Sent != cfg.Records {
		t.Errorf("sent %d, accepted %d, want %d each", report.Sent, report.Accepted, cfg.Records)
	}
	if !report.IngestComplete || report.EndToEnd <= 0 || report.Latency.N != cfg.Records/cfg.Batch {
		t.Errorf("report = %+v, want ingest complete with an end-to-end time and one latency per request", report)
	}
	var rows, ids, refused int
	err = tani.DB.QueryRow(context.Background(), `
		SELECT count(*), count(DISTINCT id), (SELECT count(*) FROM mobile.refusals)
		FROM ingest.submissions WHERE agent_id = ANY($1::uuid[])`, report.Agents).Scan(&rows, &ids, &refused)
	if err != nil {
		t.Fatal(err)
	}
	if report.WarmupRecords != cfg.Warmup {
		t.Errorf("warm-up stored %d records, want %d", report.WarmupRecords, cfg.Warmup)
	}
	if want := cfg.Records + report.SetupRecords + cfg.Warmup; rows != want || ids != want {
		t.Errorf("stored %d rows with %d distinct ids, want %d records exactly once", rows, ids, want)
	}
	if refused != 0 {
		t.Errorf("ingest refused %d records, want none", refused)
	}
	var types int
	if err := tani.DB.QueryRow(context.Background(), `SELECT count(DISTINCT type) FROM ingest.submissions`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types < 5 {
		t.Errorf("stored %d record types, want the mix (at least 5)", types)
	}
}

// TestRatio runs the capture path and the floor as `tani load -ratio`
// does, with a Tani started in process: every accepted record is stored
// (else the capture measure fails), the floor loads exactly the rows of
// the load's mix with their polygons (else the floor fails), and the
// ratio is the capture figure over the floor's of the same run. The
// binary floor loads the same rows, polygons included, from the stream
// the server wrote of them.
func TestRatio(t *testing.T) {
	ctx := context.Background()
	floorDB, err := pgxpool.New(ctx, pgtest.URL(t, pgtest.MustDatabase(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(floorDB.Close)
	start := func(_ context.Context, target string) (loadgen.Platform, func() error, error) {
		r := apptest.MustStart(t, "-target="+target)
		return loadgen.Platform{URL: r.URL, OperatorToken: r.OperatorToken, DB: r.DB}, r.Stop, nil
	}
	cfg := validConfig()
	cfg.URL, cfg.OperatorToken = "", ""
	logger := slog.New(slog.DiscardHandler)
	floor, err := loadgen.PrepareFloor(ctx, cfg, floorDB)
	if err != nil {
		t.Fatal(err)
	}
	if floor.Rows() != cfg.Records {
		t.Fatalf("floor has %d rows, want %d", floor.Rows(), cfg.Records)
	}
	var b loadgen.Bench
	b.Add(loadgen.CaptureMeasure("capture", "mobile-api,ingest", cfg, start, logger))
	b.Add(floor.Measures()...)
	b.Compare("capture", "copy", 0.25)
	res, err := b.Run(ctx, 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	capture, cp, bin, ins := res.Values("capture"), res.Values("copy"), res.Values("copy-binary"), res.Values("insert")
	if len(capture) != 1 || len(cp) != 1 || len(bin) != 1 || len(ins) != 1 || capture[0] <= 0 || cp[0] <= 0 || bin[0] <= 0 || ins[0] <= 0 {
		t.Fatalf("values capture %v, copy %v, copy-binary %v, insert %v; want one positive figure each", capture, cp, bin, ins)
	}
	if got, want := res.RatioValues(loadgen.Ratio{Num: "capture", Den: "copy"}), []float64{capture[0] / cp[0]}; got[0] != want[0] {
		t.Errorf("ratio %v, want %v", got, want)
	}
	var sides []string
	for _, s := range res.Samples["capture"][0].Side {
		sides = append(sides, s.Name)
	}
	if !slices.Contains(sides, "sync p99") {
		t.Errorf("capture side figures %q, want the /sync p99", sides)
	}
	var tables int
	if err := floorDB.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tani_floor'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("the floor left %d tables behind, want its scratch schema dropped", tables)
	}
}

// TestCaptureMeasure_AttestProgress checks that the all-in-one measure
// says how far attest had got when its clock stopped (the share of the
// stored records attest had decided), and that the capture measure, which
// runs no attest, says nothing of it.
func TestCaptureMeasure_AttestProgress(t *testing.T) {
	start := func(_ context.Context, target string) (loadgen.Platform, func() error, error) {
		r := apptest.MustStart(t, "-target="+target)
		return loadgen.Platform{URL: r.URL, OperatorToken: r.OperatorToken, DB: r.DB}, r.Stop, nil
	}
	cfg := validConfig()
	cfg.URL, cfg.OperatorToken = "", ""
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		target string
		want   bool
	}{{"all", true}, {"mobile-api,ingest", false}} {
		t.Run(tc.target, func(t *testing.T) {
			sample, err := loadgen.CaptureMeasure("m", tc.target, cfg, start, logger).Run(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(sample.Side, func(s loadgen.Side) bool { return s.Name == "attest decided" })
			switch {
			case !tc.want && i >= 0:
				t.Errorf("target %s: side figure %+v, want none", tc.target, sample.Side[i])
			case tc.want && i < 0:
				t.Errorf("target %s: side figures %+v, want attest decided", tc.target, sample.Side)
			case tc.want && (sample.Side[i].Value < 0 || sample.Side[i].Value > 100):
				t.Errorf("attest decided %v %s, want a share of 0–100", sample.Side[i].Value, sample.Side[i].Unit)
			}
		})
	}
}
