package attest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/attest"
)

func TestScratchExplain(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip()
	}
	e := mustEnv(t, nil)
	ctx := context.Background()
	db := e.pool.Config().ConnConfig.Database
	for _, q := range []string{
		`ALTER DATABASE "` + db + `" SET session_preload_libraries = 'auto_explain'`,
		`ALTER DATABASE "` + db + `" SET auto_explain.log_min_duration = '0.5ms'`,
		`ALTER DATABASE "` + db + `" SET auto_explain.log_analyze = on`,
		`ALTER DATABASE "` + db + `" SET auto_explain.log_level = 'notice'`,
	} {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.pool.Config().Copy()
	on := false
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if on {
			fmt.Fprintln(os.Stderr, "NOTICE", strings.ReplaceAll(n.Message, "\n", "\n    "))
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: t.TempDir(), CheckpointInterval: ledger.DefaultCheckpointInterval}, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	svc := attest.New(attest.Config{}, attest.Deps{Pool: pool, Journal: j, PII: mustPII(t), Logger: slog.New(slog.DiscardHandler)})
	for _, q := range strings.Split(os.Getenv("SCRATCH_SQL"), ";") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		if _, err := e.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	a := e.mustAgent(t, "Central Java")
	for i := 0; i < 100; i++ {
		var batch []attest.Input
		for f := 0; f < 200; f++ {
			n := i*200 + f
			lon, lat := 110.0+float64(n%1000)*0.002, -7.0-float64(n/1000)*0.002
			batch = append(batch, farm(t, a, lon, lat, 0.001, nationalID(), phone())...)
		}
		on = i == 99
		if _, err := svc.Process(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var r, s2, n float64
	e.pool.QueryRow(ctx, `SELECT avg(pg_column_size(results)), avg(pg_column_size(sealed_record)), avg(pg_column_size(r.*)) FROM attest.records r`).Scan(&r, &s2, &n)
	fmt.Fprintln(os.Stderr, "SIZES results", r, "sealed", s2, "row", n)
}
