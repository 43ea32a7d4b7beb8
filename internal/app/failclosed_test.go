package app_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestUp_FailsClosedOnARewrittenHistory rewrites an anchored journal entry
// in Postgres, with its hash rows, under a running `tani up` (the issue's
// attack: write access to the database, no key). The process must stop
// signing, say why on /readyz, in its metrics and once in its log, keep
// refusing while records keep arriving, and find the fork again when
// restarted on the same database.
func TestUp_FailsClosedOnARewrittenHistory(t *testing.T) {
	dataDir := t.TempDir()
	args := []string{"-data-dir=" + dataDir, "-anchor.interval=100ms", "-ledger.checkpoint-interval=100ms"}
	tani := apptest.MustStart(t, args...)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	plot := syncFarm(t, agent, 110.4005, -7.2505)[1]
	// Everything journaled is signed and anchored.
	var anchored int64
	var txID string
	eventually(t, "the whole journal signed and anchored", func() (bool, string) {
		var size int64
		var tx *string
		err := tani.DB.QueryRow(ctx, `SELECT c.size, c.anchor->>'tx_id' FROM ledger.checkpoints c, ledger.tree t
			WHERE c.size = t.size`).Scan(&size, &tx)
		if err != nil || tx == nil {
			return false, fmt.Sprintf("latest checkpoint: %v", err)
		}
		anchored, txID = size, *tx
		return true, ""
	})
	signedNote := string(mustBody(t, tani, "/ledger/v1/checkpoint", http.StatusOK))
	signed, err := verify.VerifyCheckpoint([]byte(signedNote), tani.App.Journal().Verifier())
	if err != nil {
		t.Fatal(err)
	}
	checkpoints := count(t, tani.DB, "ledger.checkpoints")

	// The attack: the plot's entry now commits to another payload, which
	// replaces the stored one; every hash above it is recomputed.
	var idx int64
	var data, payload []byte
	if err := tani.DB.QueryRow(ctx, `SELECT idx, data, payload FROM ledger.entries WHERE record_id = $1`, plot).Scan(&idx, &data, &payload); err != nil {
		t.Fatal(err)
	}
	forgedPayload := []byte(strings.Replace(string(payload), `"value":1.22`, `"value":12.2`, 1))
	if string(forgedPayload) == string(payload) {
		t.Fatalf("nothing to forge in %s", payload)
	}
	e, err := verify.ParseEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	e.PayloadHash = sha256.Sum256(forgedPayload)
	forged, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ledgertest.MustRewriteLeaf(t, tani.DB, idx, forged)
	if _, err := tani.DB.Exec(ctx, `UPDATE ledger.entries SET payload = $2, payload_hash = $3 WHERE idx = $1`, idx, forgedPayload, e.PayloadHash[:]); err != nil {
		t.Fatal(err)
	}
	forgedRoot, err := tlog.TreeHash(anchored, dbHashes(ctx, tani.DB))
	if err != nil {
		t.Fatal(err)
	}
	fork := fmt.Sprintf("the journal has stopped signing checkpoints and receipts: the journal is not a consistent extension of tree size %d (root %s; %%s): the stored tree at size %d has root %s",
		anchored, tlog.Hash(signed.Hash), anchored, forgedRoot)

	// The anchoring pass finds it: nothing else signs while nothing new is
	// journaled.
	wantReadyz := "not ready: ledger: " + fmt.Sprintf(fork, "the chain's latest anchor, tx "+txID) + "\n"
	eventually(t, "/readyz to answer 503", func() (bool, string) {
		code, body := getBody(t, tani, "/readyz")
		return code == http.StatusServiceUnavailable, fmt.Sprintf("%d %s", code, body)
	})
	if code, body := getBody(t, tani, "/readyz"); code != http.StatusServiceUnavailable || body != wantReadyz {
		t.Errorf("/readyz: got %d %q, want 503 %q", code, body, wantReadyz)
	}

	// Records keep arriving and are journaled; the journal refuses to sign
	// them, at every tick of its checkpoint loop.
	later := syncFarm(t, agent, 110.5005, -7.2505)
	eventually(t, "the checkpoint loop to refuse twice", func() (bool, string) {
		n := metric(t, tani, "tani_ledger_signatures_refused_total")
		return n >= 2, fmt.Sprintf("%v refused", n)
	})
	if got := count(t, tani.DB, "ledger.checkpoints"); got != checkpoints {
		t.Errorf("got %d checkpoints, want the %d signed before the rewrite", got, checkpoints)
	}
	if got := metric(t, tani, "tani_ledger_fork_detected"); got != 1 {
		t.Errorf("tani_ledger_fork_detected = %v, want 1", got)
	}
	wantAPI := fmt.Sprintf(`{"error":{"code":"unavailable","message":%q}}`, fmt.Sprintf(fork, "the chain's latest anchor, tx "+txID))
	for _, path := range []string{"/ledger/v1/checkpoint", "/ledger/v1/records/" + plot + "/receipt", "/ledger/v1/records/" + later[1] + "/receipt",
		fmt.Sprintf("/ledger/v1/records/%s/receipt?tree_size=%d", plot, anchored), fmt.Sprintf("/ledger/v1/proof/consistency?from=1&to=%d", anchored)} {
		if code, body := getBody(t, tani, path); code != http.StatusServiceUnavailable || strings.TrimSpace(body) != wantAPI {
			t.Errorf("GET %s: got %d %s, want 503 %s", path, code, body, wantAPI)
		}
	}
	// What was signed before stays readable, as evidence.
	if body := mustBody(t, tani, fmt.Sprintf("/ledger/v1/checkpoints/%d", anchored), http.StatusOK); string(body) != signedNote {
		t.Errorf("checkpoint %d: got %q, want the note signed before the rewrite", anchored, body)
	}
	var logged int
	for _, line := range tani.Logs() {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "fork detected") {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("got %d error log lines about the fork, want exactly 1", logged)
	}

	t.Run("ErrRestartFindsItAgain", func(t *testing.T) {
		if err := tani.Stop(); err != nil {
			t.Fatal(err)
		}
		again := apptest.MustStart(t, append(args, "-database.url="+tani.DatabaseURL)...)
		// The start-up check finds it before the process is ready: the
		// latest checkpoint in the database is signed with the key.
		want := "not ready: ledger: " + fmt.Sprintf(fork, fmt.Sprintf("checkpoint %d, signed with the journal's key", anchored)) + "\n"
		if code, body := getBody(t, again, "/readyz"); code != http.StatusServiceUnavailable || body != want {
			t.Errorf("/readyz after restart: got %d %q, want 503 %q", code, body, want)
		}
		if got := metric(t, again, "tani_ledger_fork_detected"); got != 1 {
			t.Errorf("tani_ledger_fork_detected after restart = %v, want 1", got)
		}
		if code, body := getBody(t, again, "/ledger/v1/records/"+plot+"/receipt"); code != http.StatusServiceUnavailable {
			t.Errorf("receipt after restart: got %d %s, want 503", code, body)
		}
	})
}

// syncFarm sends a farmer and a mapped plot at lon, lat and waits until the
// phone is told both are verified (journaled); it returns their ids.
func syncFarm(t *testing.T, agent *clienttest.Agent, lon, lat float64) []string {
	t.Helper()
	ctx := context.Background()
	p := clienttest.Payloads(uuid.NewString(), uuid.NewString(), time.Now())
	p["farmer.registered"]["phone"] = fmt.Sprintf("+62812%07d", mrand.IntN(1e7)) // two farmers sharing a phone are flagged
	p["plot.mapped"]["boundary"] = clienttest.Square(lon, lat, 0.001)
	p["plot.mapped"]["declared_area"] = map[string]any{"value": 1.22, "unit": "ha"}
	loc := client.Location{Lat: lat, Lon: lon, AccuracyM: 4}
	var batch []json.RawMessage
	var ids []string
	for _, typ := range []string{"farmer.registered", "plot.mapped"} {
		raw, id, err := agent.Record(record.Type(typ), time.Now().Add(-time.Hour), loc, p[typ])
		if err != nil {
			t.Fatal(err)
		}
		batch, ids = append(batch, raw), append(ids, id)
	}
	if _, err := agent.Sync(ctx, batch); err != nil {
		t.Fatalf("sync: %v", err)
	}
	for _, id := range ids {
		eventually(t, "record "+id+" verified", func() (bool, string) {
			st, err := agent.Status(ctx, id)
			if err == nil && (st.Status == "flagged" || st.Status == "rejected") {
				t.Fatalf("record %s: got %s (%s), want verified", id, st.Status, *st.Reason)
			}
			return err == nil && st.Status == "verified", fmt.Sprintf("%+v %v", st, err)
		})
	}
	return ids
}

// eventually polls cond until it holds, failing the test after 30 s with
// cond's last word.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		if ok, last := cond(); !ok {
			return fmt.Errorf("%s (last: %s)", what, last)
		}
		return nil
	})
}

func getBody(t *testing.T, r *apptest.Running, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func mustBody(t *testing.T, r *apptest.Running, path string, want int) []byte {
	t.Helper()
	code, body := getBody(t, r, path)
	if code != want {
		t.Fatalf("GET %s: got %d %s, want %d", path, code, body, want)
	}
	return []byte(body)
}

// metric reads an unlabelled metric from /metrics.
func metric(t *testing.T, r *apptest.Running, name string) float64 {
	t.Helper()
	_, body := getBody(t, r, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func count(t *testing.T, db *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// dbHashes reads the journal's stored hashes, as tlog asks for them, through
// the ledger.hashes view over the runs.
func dbHashes(ctx context.Context, db *pgxpool.Pool) tlog.HashReader {
	return tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			var b []byte
			if err := db.QueryRow(ctx, "SELECT hash FROM ledger.hashes WHERE id = $1", id).Scan(&b); err != nil {
				return nil, fmt.Errorf("hash %d: %w", id, err)
			}
			out[i] = tlog.Hash(b)
		}
		return out, nil
	})
}
