package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestParseUp(t *testing.T) {
	env := func(m map[string]string) Env { return func(k string) string { return m[k] } }
	t.Run("OK_EnvironmentSetsFlags", func(t *testing.T) {
		cfg, err := ParseUp(nil, io.Discard, env(map[string]string{
			"TANI_DATABASE_URL": "postgres://db.example/tani", "TANI_NATS_URL": "nats://n1:4222", "TANI_HTTP_LISTEN": ":9090",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Postgres.URL != "postgres://db.example/tani" || cfg.NATS.URL != "nats://n1:4222" || cfg.HTTP.Listen != ":9090" {
			t.Errorf("got %q %q %q, want the environment's values", cfg.Postgres.URL, cfg.NATS.URL, cfg.HTTP.Listen)
		}
	})
	t.Run("OK_FlagBeatsEnvironment", func(t *testing.T) {
		cfg, err := ParseUp([]string{"-http.listen=:7000"}, io.Discard, env(map[string]string{"TANI_HTTP_LISTEN": ":9090"}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.HTTP.Listen != ":7000" {
			t.Errorf("http.listen = %q, want the flag's :7000", cfg.HTTP.Listen)
		}
	})
	t.Run("ErrBadEnvironmentValue", func(t *testing.T) {
		_, err := ParseUp(nil, io.Discard, env(map[string]string{"TANI_DATABASE_MAX_CONNS": "many"}))
		if err == nil || !strings.Contains(err.Error(), "TANI_DATABASE_MAX_CONNS") {
			t.Errorf("err = %v, want one naming TANI_DATABASE_MAX_CONNS", err)
		}
	})
}

func TestMain_Usage(t *testing.T) {
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"up", "--help"}, io.Discard, &out, func(string) string { return "" }); code != 0 {
		t.Errorf("up --help exited %d, want 0", code)
	}
	for _, want := range []string{"-database.url", "TANI_DATABASE_URL", "-nats.url", "TANI_NATS_URL", "-target"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
	out.Reset()
	if code := Main(context.Background(), []string{"launch"}, io.Discard, &out, func(string) string { return "" }); code != 2 {
		t.Errorf("unknown command exited %d, want 2", code)
	}
}

func TestNetworkCommand(t *testing.T) {
	dir := t.TempDir() + "/net"
	run := func(args ...string) (string, int) {
		var out, errOut strings.Builder
		code := Main(context.Background(), append([]string{"network"}, args...), &out, &errOut, func(string) string { return "" })
		return out.String() + errOut.String(), code
	}
	if out, code := run("init", "-dir", dir); code != 0 {
		t.Fatalf("init: exit %d: %s", code, out)
	}
	t.Run("ErrAddOrgMinority", func(t *testing.T) {
		out, code := run("add-org", "-dir", dir, "-org", "CoopMSP", "-signers", "BankMSP")
		if code != 1 || !strings.Contains(out, "needs signatures from 2 of the 3") {
			t.Errorf("got exit %d, %q, want 1 and a majority error", code, out)
		}
	})
	t.Run("AddOrgThenMembers", func(t *testing.T) {
		if out, code := run("add-org", "-dir", dir, "-org", "CoopMSP", "-signers", "BankMSP,TaniMSP"); code != 0 {
			t.Fatalf("add-org: exit %d: %s", code, out)
		}
		out, code := run("members", "-dir", dir)
		if code != 0 || !strings.Contains(out, "4 organizations") || !strings.Contains(out, "CoopMSP") {
			t.Errorf("got exit %d, %q, want four members including CoopMSP", code, out)
		}
	})
}
