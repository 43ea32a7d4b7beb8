package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLoad(t *testing.T) {
	noEnv := func(string) string { return "" }
	t.Run("OK_TokenFromFile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "operator-token")
		if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := parseLoad([]string{"-operator-token-file=" + file, "-records=1000"}, io.Discard, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OperatorToken != "s3cret" || cfg.Records != 1000 || cfg.Agents != 8 || cfg.Batch != 100 {
			t.Errorf("got token %q, records %d, agents %d, batch %d; want the file's token, 1000 and the defaults 8, 100",
				cfg.OperatorToken, cfg.Records, cfg.Agents, cfg.Batch)
		}
	})
	t.Run("OK_FlagTokenBeatsFile", func(t *testing.T) {
		cfg, err := parseLoad([]string{"-operator-token=flag", "-operator-token-file=/nonexistent/token"}, io.Discard, noEnv)
		if err != nil || cfg.OperatorToken != "flag" {
			t.Errorf("token %q, err %v; want the flag's token", cfg.OperatorToken, err)
		}
	})
	t.Run("OK_RatioNeedsNoToken", func(t *testing.T) {
		cfg, rc, err := parseLoadRatio([]string{"-ratio", "-runs=5", "-ratio.measures=capture,copy", "-operator-token-file=/nonexistent"}, io.Discard, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		names, err := rc.selected()
		if !rc.Enabled || rc.Runs != 5 || err != nil || strings.Join(names, ",") != "capture,copy" || cfg.Records != 50_000 {
			t.Errorf("ratio %+v (measures %q, %v), records %d; want enabled, 5 runs, capture and copy, the default 50,000 records", rc, names, err, cfg.Records)
		}
		if cfg.Warmup != ratioWarmup {
			t.Errorf("warm-up %d, want the ratio's default %d", cfg.Warmup, ratioWarmup)
		}
	})
	t.Run("OK_WarmupGivenBeatsRatioDefault", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  string
		}{{[]string{"-ratio", "-warmup=0"}, ""}, {[]string{"-ratio"}, "0"}} {
			env := func(name string) string {
				if name == "TANI_WARMUP" {
					return tc.env
				}
				return ""
			}
			cfg, _, err := parseLoadRatio(tc.args, io.Discard, env)
			if err != nil || cfg.Warmup != 0 {
				t.Errorf("%q with TANI_WARMUP=%q: warm-up %d, err %v; want the 0 given", tc.args, tc.env, cfg.Warmup, err)
			}
		}
		cfg, err := parseLoad([]string{"-operator-token=t"}, io.Discard, noEnv)
		if err != nil || cfg.Warmup != 0 {
			t.Errorf("plain load: warm-up %d, err %v; want none by default", cfg.Warmup, err)
		}
	})
	t.Run("ErrRatioSettings", func(t *testing.T) {
		_, _, err := parseLoadRatio([]string{"-ratio", "-runs=0", "-ratio.measures=capture,journal", "-records=0"}, io.Discard, noEnv)
		for _, want := range []string{"-runs 0", `unknown measure "journal"`, "-records 0"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to name %q", err, want)
			}
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		_, err := parseLoad([]string{"-operator-token-file=" + filepath.Join(t.TempDir(), "missing")}, io.Discard, noEnv)
		if err == nil || !strings.Contains(err.Error(), "operator token") {
			t.Errorf("err = %v, want one about the operator token", err)
		}
	})
}

func TestMain_LoadBadFlags(t *testing.T) {
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"load", "-operator-token=x", "-batch=0", "-agents=-1"}, io.Discard, &stderr, func(string) string { return "" })
	if code == 0 {
		t.Errorf("exit status 0, want non-zero")
	}
	for _, want := range []string{"tani load:", "-batch 0", "-agents -1"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
}
