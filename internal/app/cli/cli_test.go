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
	t.Run("Members", func(t *testing.T) {
		out, code := run("members", "-dir", dir)
		if code != 0 || !strings.Contains(out, "3 organizations") || !strings.Contains(out, "anchor peers [127.0.0.1:") {
			t.Errorf("got exit %d, %q, want three members with their anchor peers", code, out)
		}
	})
	t.Run("ErrProposeWithoutOrg", func(t *testing.T) {
		if out, code := run("propose", "remove-member", "-dir", dir, "-by", "TaniMSP"); code != 2 || !strings.Contains(out, "-org and -by are required") {
			t.Errorf("got exit %d, %q, want 2 and the missing flags named", code, out)
		}
	})
	t.Run("ErrAddMemberWithoutFabric", func(t *testing.T) {
		out, code := run("propose", "add-member", "-dir", dir, "-org", "CoopMSP", "-by", "TaniMSP", "-fabric-bin", t.TempDir(), "-chaincode-bin", "/bin/true")
		if code != 1 || !strings.Contains(out, "CoopMSP's identities come from its own Fabric CA") {
			t.Errorf("got exit %d, %q, want 1 and the CA requirement explained", code, out)
		}
	})
	t.Run("VoteWithoutAnOrderingService", func(t *testing.T) {
		out, code := run("propose", "remove-member", "-dir", dir, "-org", "DistributorMSP", "-by", "BankMSP")
		if code != 0 || !strings.Contains(out, "1-remove-member-DistributorMSP") {
			t.Fatalf("propose: exit %d: %s", code, out)
		}
		if out, code := run("vote", "-dir", dir, "-proposal", "1-remove-member-DistributorMSP", "-member", "BankMSP"); code != 0 || !strings.Contains(out, "1 yes, 0 no of 3 voters (2 yes needed): open") {
			t.Errorf("first vote: exit %d: %s", code, out)
		}
		if out, code := run("vote", "-dir", dir, "-proposal", "1-remove-member-DistributorMSP", "-member", "BankMSP"); code != 1 || !strings.Contains(out, "already voted") {
			t.Errorf("second vote by the same member: exit %d: %s", code, out)
		}
		// Approved, but a consortium directory the devnet serves has no
		// ordering service: the command says so and nothing changes.
		out, code = run("vote", "-dir", dir, "-proposal", "1-remove-member-DistributorMSP", "-member", "TaniMSP")
		if code != 1 || !strings.Contains(out, "approved but not applied") || !strings.Contains(out, "does not apply configuration updates") {
			t.Errorf("approving vote: exit %d, %q, want 1 and a plain refusal", code, out)
		}
		if out, _ := run("members", "-dir", dir); !strings.Contains(out, "DistributorMSP") {
			t.Errorf("members after an unapplied removal: %s", out)
		}
		if out, code := run("proposals", "-dir", dir); code != 0 || !strings.Contains(out, "approved") {
			t.Errorf("proposals: exit %d: %s", code, out)
		}
	})
}
