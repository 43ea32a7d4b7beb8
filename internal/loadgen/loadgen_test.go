package loadgen_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/loadgen"
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

// TestRun drives a whole process with a tiny load and checks what the
// user of the figures relies on: every accepted record was stored exactly
// once, and the report says so.
func TestRun(t *testing.T) {
	tani := apptest.MustStart(t)
	cfg := validConfig()
	cfg.URL, cfg.OperatorToken = tani.URL, tani.OperatorToken
	cfg.Concurrency = 3

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
	if want := cfg.Records + report.SetupRecords; rows != want || ids != want {
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
