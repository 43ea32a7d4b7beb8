package marketplace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/identity"
)

// distributor is a distributor organization of a running process, with an
// API key and a portal user.
type distributor struct {
	org, token, username, password string
}

func mustDistributor(t *testing.T, tani *apptest.Running) distributor {
	t.Helper()
	ctx := context.Background()
	var cfg identity.Config
	fs := flag.NewFlagSet("identity", flag.ContinueOnError)
	cfg.RegisterFlags(fs, "")
	dir, err := identity.New(cfg, identity.Deps{Pool: tani.DB, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d := distributor{org: uuid.NewString(), username: "dist-" + uuid.NewString()[:8], password: "correct horse battery staple"}
	if _, err := tani.DB.Exec(ctx, `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, 'distributor')`, d.org, "Toko Tani "+d.org[:8]); err != nil {
		t.Fatal(err)
	}
	_, d.token, err = dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: d.org, Name: "test", ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.CreateUser(ctx, identity.NewUser{OrganizationID: d.org, Username: d.username, Name: "Ibu Sari", Role: "admin", Password: d.password, CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	return d
}

// call sends a JSON request with the distributor's API key and decodes the
// answer into out (when not nil); it returns the status.
func (d distributor) call(t *testing.T, tani *apptest.Running, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, tani.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+d.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	if out != nil && resp.StatusCode >= 300 {
		if p, ok := out.(*map[string]any); ok {
			_ = json.Unmarshal(raw, p)
		}
	}
	return resp.StatusCode
}
