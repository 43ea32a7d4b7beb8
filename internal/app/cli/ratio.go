package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/loadgen"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/ledger"
)

// ratioConfig is `tani load -ratio`: the capture path against the floor,
// interleaved in one invocation.
type ratioConfig struct {
	Enabled  bool
	Runs     int
	Measures string // comma-separated measure names
	TaniBin  string
	WorkDir  string
}

// ratioMeasures are the measures `tani load -ratio` knows, in the order
// it runs them.
var ratioMeasures = append([]string{"capture", "up"}, floorMeasures...)

// floorMeasures are the floor's (loadgen.Floor.Measures): the
// denominators of the ratios.
var floorMeasures = []string{"copy", "copy-binary", "insert"}

// ratioWarmup is the -warmup of `tani load -ratio` unless one is given: a
// tenth of the default run, so that the timed phase meets a process that
// has served before, as a deployment's does. It takes most, not all, of
// the pool's first-use costs out of the window (a fresh backend's first
// geography costs ~65 ms of Postgres CPU; the pool still opens a few
// connections when the timed load asks for them, docs/performance.md).
const ratioWarmup = 5_000

// defaultServer is where the scratch databases go when -database.url is
// not set: the development default of scripts/setup.sh.
const defaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func (c *ratioConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "ratio", false, "measure the capture path against Postgres's floor (COPY of CSV, binary COPY, batched INSERT) in one interleaved invocation and print min/median/max and ratios; -database.url then names the Postgres server for the scratch databases")
	fs.IntVar(&c.Runs, "runs", 3, "with -ratio: interleaved runs of every measure")
	fs.StringVar(&c.Measures, "ratio.measures", strings.Join(ratioMeasures, ","), "with -ratio: measures to take (capture: -target=mobile-api,ingest; up: target all; copy, copy-binary, insert: the floor, by COPY of CSV, binary COPY, batched INSERT)")
	fs.StringVar(&c.TaniBin, "ratio.tani-bin", "", "with -ratio: the tani binary to start for each capture run; empty means this one")
	fs.StringVar(&c.WorkDir, "ratio.work-dir", "", "with -ratio: where data directories and logs of the started processes go; empty makes a temporary one, removed after a clean run")
}

func (c ratioConfig) selected() ([]string, error) {
	var out []string
	var errs []error
	for _, m := range strings.Split(c.Measures, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !slices.Contains(ratioMeasures, m) {
			errs = append(errs, fmt.Errorf("-ratio.measures: unknown measure %q (known: %s)", m, strings.Join(ratioMeasures, ", ")))
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("-ratio.measures names no measure"))
	}
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("-runs %d must be at least 1", c.Runs))
	}
	return out, errors.Join(errs...)
}

// runRatio builds the bench and runs it. Tani is started as a child
// process for every capture run (see docs/performance.md for why).
func runRatio(ctx context.Context, cfg loadgen.Config, rc ratioConfig, stdout, stderr io.Writer) error {
	names, err := rc.selected()
	if err != nil {
		return err
	}
	server := cfg.DatabaseURL
	if server == "" {
		server = defaultServer
	}
	work := rc.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "tani-ratio-"); err != nil {
			return err
		}
	}
	bin := rc.TaniBin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find the tani binary (set -ratio.tani-bin): %w", err)
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return fmt.Errorf("postgres server %s: %w", postgres.Redact(server), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	prefix := fmt.Sprintf("tani_ratio_%d_%s", os.Getpid(), randomHex(3))
	ps := &processStarter{bin: bin, work: work, server: server, admin: admin, prefix: prefix}

	var b loadgen.Bench
	var cleanups []func()
	defer func() {
		for _, c := range slices.Backward(cleanups) {
			c()
		}
	}()
	for _, name := range names {
		switch name {
		case "capture":
			b.Add(loadgen.CaptureMeasure("capture", "mobile-api,ingest", cfg, ps.start, logger))
		case "up":
			b.Add(loadgen.CaptureMeasure("up", app.All, cfg, ps.start, logger))
		}
	}
	if slices.ContainsFunc(names, func(n string) bool { return slices.Contains(floorMeasures, n) }) {
		pool, drop, err := scratchDatabase(ctx, admin, server, prefix+"_floor")
		if err != nil {
			return err
		}
		cleanups = append(cleanups, drop)
		fmt.Fprintf(stderr, "preparing the floor's %d rows\n", cfg.Records)
		floor, err := loadgen.PrepareFloor(ctx, cfg, pool)
		if err != nil {
			return fmt.Errorf("prepare floor: %w", err)
		}
		for _, m := range floor.Measures() {
			if slices.Contains(names, m.Name) {
				b.Add(m)
			}
		}
	}
	for _, num := range []string{"capture", "up"} {
		for _, den := range floorMeasures {
			if slices.Contains(names, num) && slices.Contains(names, den) {
				b.Compare(num, den, captureGoals[num+"/"+den])
			}
		}
	}
	res, err := b.Run(ctx, rc.Runs, stderr)
	if res != nil {
		fmt.Fprintln(stdout)
		res.Write(stdout)
	}
	if err != nil {
		return fmt.Errorf("%w (logs of the started processes: %s)", err, work)
	}
	if rc.WorkDir == "" {
		os.RemoveAll(work)
	}
	return nil
}

// captureGoals are issue 17's: the capture path at a quarter of COPY, the
// all-in-one process at 0.15.
var captureGoals = map[string]float64{"capture/copy": 0.25, "up/copy": 0.15}

// processStarter starts `tani up` as a child process on a fresh database
// per measurement. A child process is what a deployment runs: its own
// heap, collector and scheduler, none of them shared with the load
// generator's 50,000 pre-signed records and HTTP client.
type processStarter struct {
	bin, work, server string
	admin             *pgx.Conn
	prefix            string
	n                 int
	keys              []string // key flags for split targets, made once
}

func (p *processStarter) start(ctx context.Context, target string) (loadgen.Platform, func() error, error) {
	p.n++
	name := fmt.Sprintf("%s_%d", p.prefix, p.n)
	dir := filepath.Join(p.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return loadgen.Platform{}, nil, err
	}
	dbURL, err := withDatabase(p.server, name)
	if err != nil {
		return loadgen.Platform{}, nil, err
	}
	token := "ratio-" + randomHex(16)
	args := []string{"up", "-target=" + target, "-data-dir=" + filepath.Join(dir, "data"), "-database.url=" + dbURL,
		"-http.listen=127.0.0.1:0", "-fabric.devnet-listen=127.0.0.1:0", "-auth.operator-token=" + token,
		"-log.level=warn", "-log.format=text"}
	if target != app.All {
		if p.keys == nil {
			set, err := app.InitKeys(filepath.Join(p.work, "keys"), ledger.DefaultOrigin, false)
			if err != nil {
				return loadgen.Platform{}, nil, fmt.Errorf("create the split processes' keys: %w", err)
			}
			for _, f := range set.Flags() {
				if !strings.HasPrefix(f, "-auth.operator-token-file=") {
					p.keys = append(p.keys, f)
				}
			}
		}
		args = append(args, p.keys...)
	}
	logPath := filepath.Join(dir, "tani.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return loadgen.Platform{}, nil, err
	}
	cmd := exec.Command(p.bin, args...)
	// Only flags say what the child runs: TANI_* variables of this shell
	// (an external NATS, another database) would change what is measured.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return loadgen.Platform{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return loadgen.Platform{}, nil, fmt.Errorf("start %s: %w", p.bin, err)
	}
	exited := make(chan error, 1)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		var errs []error
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				errs = append(errs, fmt.Errorf("tani exited: %w (log: %s)", err, logPath))
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
			errs = append(errs, fmt.Errorf("tani did not stop within a minute of SIGTERM (log: %s)", logPath))
		}
		logFile.Close()
		if _, err := p.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", name, err))
		}
		if len(errs) == 0 {
			os.RemoveAll(dir)
		}
		return errors.Join(errs...)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ready:"); ok {
				select {
				case ready <- strings.TrimSuffix(strings.TrimSpace(rest), "/readyz"):
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	var base string
	select {
	case base = <-ready:
	case err := <-exited:
		exited <- err
		return loadgen.Platform{}, nil, errors.Join(fmt.Errorf("tani up -target=%s exited before it was ready: %v (log: %s)", target, err, logPath), stop())
	case <-time.After(3 * time.Minute):
		return loadgen.Platform{}, nil, errors.Join(fmt.Errorf("tani up -target=%s not ready within 3 minutes (log: %s)", target, logPath), stop())
	case <-ctx.Done():
		return loadgen.Platform{}, nil, errors.Join(ctx.Err(), stop())
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return loadgen.Platform{}, nil, errors.Join(err, stop())
	}
	return loadgen.Platform{URL: base, OperatorToken: token, DB: pool, PID: cmd.Process.Pid}, func() error {
		pool.Close()
		return stop()
	}, nil
}

// scratchDatabase creates a database with PostGIS for the floor and
// returns a pool on it and a function that drops it.
func scratchDatabase(ctx context.Context, admin *pgx.Conn, server, name string) (*pgxpool.Pool, func(), error) {
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return nil, nil, fmt.Errorf("create scratch database %s: %w", name, err)
	}
	drop := func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)") }
	dbURL, err := withDatabase(server, name)
	if err != nil {
		drop()
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err == nil {
		_, err = pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS postgis")
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		drop()
		return nil, nil, fmt.Errorf("scratch database %s: %w", name, err)
	}
	return pool, func() { pool.Close(); drop() }, nil
}

// withDatabase returns server's URL naming database instead.
func withDatabase(server, database string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("-database.url %s must be a postgres:// URL", postgres.Redact(server))
	}
	u.Path = "/" + database
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
