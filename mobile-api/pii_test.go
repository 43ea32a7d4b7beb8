package mobileapi_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestPII_NeverAtRestInClear follows a farmer's national ID and phone
// through the whole platform: after registration, ingestion, attestation
// and journaling, neither may appear in clear in any table or in the
// JetStream store on disk.
func TestPII_NeverAtRestInClear(t *testing.T) {
	tani := apptest.MustStart(t, "-ledger.checkpoint-interval=100ms")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer := uuid.NewString()
	p := clienttest.Payloads(farmer, "", time.Now())["farmer.registered"]
	nationalID, phone := p["national_id"].(string), p["phone"].(string)
	raw, id, err := agent.Record("farmer.registered", time.Now(), loc, p)
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, agent, raw)
	if st := waitStatus(t, agent, id, "decided"); st.Status != "verified" {
		t.Fatalf("registration %s (%v); the test needs it verified to reach the journal", st.Status, st.Reason)
	}
	polltest.Eventually(t, 30*time.Second, func() error {
		var journaled int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM ledger.entries WHERE convert_from(data, 'UTF8') LIKE '%' || $1 || '%'`, id).Scan(&journaled); err != nil {
			return err
		}
		if journaled == 0 {
			return errors.New("the registration never reached the journal")
		}
		return nil
	})

	// Every text and bytea column of every Tani schema.
	rows, err := tani.DB.Query(ctx, `
		SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema IN ('mobile', 'ingest', 'attest', 'ledger')
		  AND data_type IN ('text', 'bytea', 'jsonb', 'json', 'character varying')
		  AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct{ schema, table, name, typ string }
	var cols []column
	for rows.Next() {
		var c column
		rows.Scan(&c.schema, &c.table, &c.name, &c.typ)
		cols = append(cols, c)
	}
	if len(cols) < 20 {
		t.Fatalf("found only %d columns to search", len(cols))
	}
	for _, secret := range []string{nationalID, phone} {
		for _, c := range cols {
			expr := c.name + "::text"
			if c.typ == "bytea" {
				expr = "encode(" + c.name + ", 'escape')"
			}
			var n int
			q := "SELECT count(*) FROM " + c.schema + "." + c.table + " WHERE " + expr + " LIKE '%' || $1 || '%'"
			if err := tani.DB.QueryRow(ctx, q, secret).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if n > 0 {
				t.Errorf("%s.%s.%s holds %q in clear", c.schema, c.table, c.name, secret)
			}
		}
		err := filepath.WalkDir(filepath.Join(tani.DataDir, "nats"), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err == nil && bytes.Contains(b, []byte(secret)) {
				t.Errorf("JetStream file %s holds %q in clear", path, secret)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
