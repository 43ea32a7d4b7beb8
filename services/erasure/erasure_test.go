package erasure_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/app/cli"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// eventually polls cond until it holds, failing the test after timeout
// with what cond last said.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	polltest.Eventually(t, timeout, func() error {
		if ok, last := cond(); !ok {
			return fmt.Errorf("%s (last: %s)", what, last)
		}
		return nil
	})
}

// digits returns n random decimal digits.
func digits(n int) string {
	var b strings.Builder
	for range n {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteString(d.String())
	}
	return b.String()
}

// farmerData is one farmer with values distinctive enough to be searched
// for anywhere, and the records about them.
type farmerData struct {
	id, plot                  string
	name, nationalID, phone   string
	village                   string
	lon, lat                  string // the plot's first corner, also where the phone was
	photo                     []byte
	photoHash                 string
	records                   map[string]string // type -> record id
	registration, flaggedCrop string
}

func newFarmer(t *testing.T) *farmerData {
	t.Helper()
	tag := digits(9)
	f := &farmerData{
		id: uuid.NewString(), plot: uuid.NewString(),
		name: "Ratna Lupakan" + tag, nationalID: "33" + digits(14), phone: "+62813" + digits(7), village: "Kampung" + tag,
		lon: "110.4" + digits(6) + "7", lat: "-7.2" + digits(6) + "3", records: map[string]string{},
	}
	f.photo = make([]byte, 30_000)
	rand.Read(f.photo)
	copy(f.photo, "\x89PNG\r\n\x1a\n")
	sum := sha256.Sum256(f.photo)
	f.photoHash = hex.EncodeToString(sum[:])
	return f
}

func (f *farmerData) location(t *testing.T) client.Location {
	t.Helper()
	var lon, lat float64
	if _, err := fmt.Sscan(f.lon, &lon); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(f.lat, &lat); err != nil {
		t.Fatal(err)
	}
	return client.Location{Lat: lat, Lon: lon, AccuracyM: 4}
}

// register sends the farmer's photo and records (registration, plot,
// planting, and a planting captured far from the plot, which attest
// flags) and waits until each is decided.
func (f *farmerData) register(t *testing.T, tani *apptest.Running, agent *clienttest.Agent) {
	t.Helper()
	ctx := context.Background()
	if got, err := agent.UploadMedia(ctx, bytes.NewReader(f.photo), int64(len(f.photo)), "image/png"); err != nil || got != f.photoHash {
		t.Fatalf("upload photo: %s %v", got, err)
	}
	loc := f.location(t)
	p := clienttest.Payloads(f.id, f.plot, time.Now())
	p["farmer.registered"]["name"], p["farmer.registered"]["national_id"] = f.name, f.nationalID
	p["farmer.registered"]["phone"], p["farmer.registered"]["village"] = f.phone, f.village
	p["farmer.registered"]["photo_hash"] = f.photoHash
	p["plot.mapped"]["boundary"] = clienttest.Square(loc.Lon, loc.Lat, 0.001)
	p["plot.mapped"]["declared_area"] = map[string]any{"value": 1.22, "unit": "ha"}
	var batch []json.RawMessage
	for _, typ := range []string{"farmer.registered", "plot.mapped", "crop.planted"} {
		raw, id, err := agent.Record(record.Type(typ), time.Now().Add(-time.Hour), loc, p[typ])
		if err != nil {
			t.Fatal(err)
		}
		batch, f.records[typ] = append(batch, raw), id
	}
	// The same planting captured far from the plot: flagged, so that a
	// review (and a reviewer's note naming the farmer) exists too.
	far := client.Location{Lat: -6.2, Lon: 106.8, AccuracyM: 4}
	p["crop.planted"]["variety"] = "Ciherang"
	raw, id, err := agent.Record("crop.planted", time.Now().Add(-time.Hour), far, p["crop.planted"])
	if err != nil {
		t.Fatal(err)
	}
	batch, f.flaggedCrop = append(batch, raw), id
	f.registration = f.records["farmer.registered"]
	res, err := agent.Sync(ctx, batch)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	for _, r := range res {
		if r.Status != "accepted" {
			t.Fatalf("sync: %+v, want every record accepted", res)
		}
	}
	for _, id := range append(mapValues(f.records), f.flaggedCrop) {
		eventually(t, 30*time.Second, "record "+id+" decided", func() (bool, string) {
			var st string
			tani.DB.QueryRow(ctx, `SELECT status FROM attest.record_status WHERE id = $1`, id).Scan(&st)
			return st != "" && st != "pending", st
		})
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func adminDo(t *testing.T, tani *apptest.Running, method, path, body string) (int, []byte) {
	t.Helper()
	return adminDoAs(t, tani, tani.OperatorToken, method, path, body)
}

// adminDoAs is adminDo with another bearer token (a named operator's).
func adminDoAs(t *testing.T, tani *apptest.Running, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, tani.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestErasure_ForgetsTheFarmerEverywhere registers a farmer with
// distinctive values through the phone API, lets the records be verified,
// reviewed and journaled, erases the farmer with `tani farmer erase`, and
// then looks for the farmer's values in every column of every table,
// every message of every stream (and the stream files), and the media
// directory; old receipts must still verify and the audit pass.
func TestErasure_ForgetsTheFarmerEverywhere(t *testing.T) {
	natsDir := t.TempDir()
	ns := natstest.MustServerAt(t, natsDir) // an unencrypted store, so that its files can be searched too
	_, js := natstest.MustJetStream(t, ns)
	tani := apptest.MustStart(t, "-nats.url="+ns.ClientURL(), "-ledger.checkpoint-interval=100ms", "-anchor.interval=100ms",
		"-attest.sweep-interval=100ms", "-erasure.sweep-interval=100ms")
	ctx := context.Background()
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	gone, kept := newFarmer(t), newFarmer(t)
	gone.register(t, tani, agent)
	kept.register(t, tani, agent)

	// A reviewer approves the flagged planting with a note naming the
	// farmer: the note is journaled (review.decision).
	var review string
	if err := tani.DB.QueryRow(ctx, `SELECT id::text FROM attest.reviews WHERE record_id = $1`, gone.flaggedCrop).Scan(&review); err != nil {
		t.Fatalf("review of the flagged planting: %v", err)
	}
	reviewer, _ := tani.MustOperatorUser(t, "reviewer")
	if code, body := adminDoAs(t, tani, reviewer, http.MethodPost, "/admin/v1/reviews/"+review+"/approve",
		`{"reason":"called `+gone.name+` in `+gone.village+`: planted late"}`); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	// A copy of the registration with a broken signature, put on the
	// stream behind mobile-api's back: ingest refuses it into DEAD, with
	// the farmer's values in it.
	var tampered struct {
		raw json.RawMessage
		id  string
	}
	{
		p := clienttest.Payloads(gone.id, "", time.Now())["farmer.registered"]
		p["name"], p["national_id"], p["phone"], p["village"] = gone.name, gone.nationalID, gone.phone, gone.village
		raw, id, err := agent.Record("farmer.registered", time.Now().Add(-time.Hour), gone.location(t), p)
		if err != nil {
			t.Fatal(err)
		}
		tampered.raw, tampered.id = bytes.Replace(raw, []byte(`"birth_year":1980`), []byte(`"birth_year":1981`), 1), id
		msg := nats.NewMsg(natsbus.SubjectSubmittedPrefix + "farmer.registered")
		msg.Data = tampered.raw
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "the tampered record dead-lettered", func() (bool, string) {
		n := natstest.Count(t, js, natsbus.StreamDead, natsbus.SubjectDeadPrefix+natsbus.SubjectSubmittedPrefix+">")
		return n == 1, fmt.Sprint(n, " dead letters")
	})
	// Everything verified is journaled, every decision announced.
	goneRecords := append(mapValues(gone.records), gone.flaggedCrop)
	for _, id := range goneRecords {
		eventually(t, 30*time.Second, "record "+id+" journaled and announced", func() (bool, string) {
			var ok bool
			tani.DB.QueryRow(ctx, `SELECT (status <> 'verified' OR leaf_index IS NOT NULL) AND published = decision FROM attest.records WHERE record_id = $1`, id).Scan(&ok)
			return ok, "not yet"
		})
	}
	for _, id := range []string{gone.registration, gone.records["plot.mapped"], gone.flaggedCrop} {
		var st string
		tani.DB.QueryRow(ctx, `SELECT status FROM attest.records WHERE record_id = $1`, id).Scan(&st)
		if st != "verified" {
			t.Fatalf("record %s is %s; the test needs it verified, so journaled", id, st)
		}
	}
	eventually(t, 30*time.Second, "the review decision journaled", func() (bool, string) {
		var n int
		tani.DB.QueryRow(ctx, `SELECT count(*) FROM attest.review_events WHERE review_id = $1 AND leaf_index IS NOT NULL`, review).Scan(&n)
		return n == 1, fmt.Sprint(n)
	})
	receipt := getReceipt(t, tani, gone.registration)
	downBefore := syncDown(t, tani, agent, "")

	// What the erasure must leave nowhere: the values, their keyed
	// hashes, their encrypted and sealed forms as stored.
	keyFile, err := os.ReadFile(filepath.Join(tani.DataDir, "pii.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pii.Parse(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"name": gone.name, "national ID": gone.nationalID, "phone": gone.phone, "village": gone.village,
		"longitude": gone.lon, "latitude": gone.lat, "photo hash": gone.photoHash,
	}
	binary := map[string][]byte{
		"national ID HMAC": keys.NationalIDHash(gone.nationalID), "phone HMAC": keys.PhoneHash(gone.phone),
		"photo bytes": gone.photo[1000:1064],
	}
	var phoneEnc, sealedIngest, sealedAttest []byte
	if err := tani.DB.QueryRow(ctx, `SELECT phone_enc FROM ingest.farmers WHERE farmer_id = $1`, gone.id).Scan(&phoneEnc); err != nil {
		t.Fatal(err)
	}
	if err := tani.DB.QueryRow(ctx, `SELECT sealed_record FROM ingest.submissions WHERE id = $1`, gone.registration).Scan(&sealedIngest); err != nil {
		t.Fatal(err)
	}
	if err := tani.DB.QueryRow(ctx, `SELECT sealed_record FROM attest.records WHERE record_id = $1`, gone.registration).Scan(&sealedAttest); err != nil {
		t.Fatal(err)
	}
	binary["encrypted phone"], binary["sealed record (ingest)"], binary["sealed record (attest)"] = phoneEnc[:32], sealedIngest[:32], sealedAttest[:32]
	for k, v := range binary {
		secrets[k+" (hex)"] = hex.EncodeToString(v)
	}
	// The search must be able to fail: before the erasure it finds what
	// is stored (national IDs and phones never are in clear, the photo's
	// bytes are in a file).
	before := strings.Join(searchDatabase(t, tani, secrets, binary), "\n")
	for what := range secrets {
		if what != "national ID" && what != "phone" && what != "photo bytes (hex)" && !strings.Contains(before, "the "+what) {
			t.Fatalf("before the erasure the search did not find the %s; it cannot be trusted:\n%s", what, before)
		}
	}

	var out strings.Builder
	code := cli.Main(ctx, []string{"farmer", "erase", gone.id, "-reason", "data protection request, ticket 4711", "-requested-by", "Dewi (operator)",
		"-url", tani.URL, "-operator-token", tani.OperatorToken, "-wait", "-timeout", "60s"}, &out, &out, func(string) string { return "" })
	if code != 0 || !strings.Contains(out.String(), ": complete") {
		t.Fatalf("tani farmer erase: exit %d\n%s", code, out.String())
	}
	admin := client.NewAdmin(tani.URL, tani.OperatorToken)
	st, err := admin.FarmerErasure(ctx, gone.id)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OK_EveryOwnerReportsWhatItErased", func(t *testing.T) {
		want := map[string]map[string]float64{
			"mobile-api":  {"received": 4, "media_files": 1, "media": 1, "assignments": 1},
			"ingest":      {"submissions": 4, "farmers": 1, "plots": 1, "dead_letters": 1},
			"attest":      {"records": 4, "reviews": 1, "farmers": 1, "plots": 1},
			"webhooks":    {"events": 1},
			"consent":     {},
			"lending":     {}, // the farmer had no score or loan; lending's own test erases them
			"marketplace": {},
			"ledger":      {"redacted": 4},
		}
		if len(st.Owners) != len(want) || st.LeafIndex == nil || !st.Published {
			t.Fatalf("status %+v, want the request journaled and published, and %d owners", st, len(want))
		}
		for _, o := range st.Owners {
			if o.State != "complete" {
				t.Errorf("%s: %s, want complete", o.Owner, o.State)
			}
			var got map[string]any
			if err := json.Unmarshal(o.Erased, &got); err != nil {
				t.Errorf("%s erased %s: %v", o.Owner, o.Erased, err)
			}
			for k, n := range want[o.Owner] {
				if v, _ := got[k].(float64); v < n {
					t.Errorf("%s erased %s, want %s ≥ %v", o.Owner, o.Erased, k, n)
				}
			}
		}
	})
	t.Run("OK_NoColumnHoldsTheFarmer", func(t *testing.T) {
		if found := searchDatabase(t, tani, secrets, binary); len(found) > 0 {
			t.Errorf("after the erasure:\n%s", strings.Join(found, "\n"))
		}
	})
	t.Run("OK_NoStreamHoldsTheFarmer", func(t *testing.T) {
		for _, f := range searchStreams(t, js, secrets) {
			t.Error(f)
		}
		// The store files too: SecureDeleteMsg overwrote the bytes.
		err := filepath.WalkDir(natsDir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			for what, s := range secrets {
				if err == nil && bytes.Contains(b, []byte(s)) {
					t.Errorf("JetStream file %s holds the %s", path, what)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK_NoMediaFileHoldsThePhoto", func(t *testing.T) {
		files := 0
		err := filepath.WalkDir(filepath.Join(tani.DataDir, "media"), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files++
			b, err := os.ReadFile(path)
			if err == nil && bytes.Contains(b, gone.photo[1000:1064]) {
				t.Errorf("media file %s holds the erased farmer's photo", path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if files == 0 {
			t.Error("no media file at all: the other farmer's photo must stay")
		}
	})
	t.Run("OK_OtherFarmerKept", func(t *testing.T) {
		if found := searchDatabase(t, tani, map[string]string{"name": kept.name, "village": kept.village, "longitude": kept.lon}, nil); len(found) < 3 {
			t.Errorf("the other farmer's values: found only %v", found)
		}
		if _, err := os.Stat(filepath.Join(tani.DataDir, "media", "sha256", kept.photoHash[:2], kept.photoHash)); err != nil {
			t.Errorf("the other farmer's photo: %v", err)
		}
	})
	t.Run("OK_OldReceiptStillVerifies", func(t *testing.T) {
		key, err := os.ReadFile(filepath.Join(tani.DataDir, "ledger.pub"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := verify.VerifyReceipt(receipt, strings.TrimSpace(string(key)))
		if err != nil {
			t.Fatalf("receipt issued before the erasure: %v", err)
		}
		if res.Entry.RecordID != gone.registration {
			t.Errorf("receipt proves %s, want %s", res.Entry.RecordID, gone.registration)
		}
		if _, err := verify.VerifyReceipt(getReceipt(t, tani, gone.registration), strings.TrimSpace(string(key))); err != nil {
			t.Errorf("receipt of the erased revision issued after the erasure: %v", err)
		}
	})
	t.Run("OK_AuditPasses", func(t *testing.T) {
		var out strings.Builder
		code := cli.Main(ctx, []string{"verify", "-data-dir", tani.DataDir, "-database.url", tani.DatabaseURL,
			"-fabric.devnet-listen", tani.App.FabricDevnetAddr()}, &out, &out, func(string) string { return "" })
		if code != 0 || strings.Contains(out.String(), "FAULT") {
			t.Errorf("tani verify: exit %d\n%s", code, out.String())
		}
	})
	t.Run("OK_ErasureJournaled", func(t *testing.T) {
		var h struct {
			Revisions []struct {
				Kind     string          `json:"kind"`
				Revision int64           `json:"revision"`
				Payload  json.RawMessage `json:"payload"`
			} `json:"revisions"`
		}
		code, body := adminDo(t, tani, http.MethodGet, "/ledger/v1/records/"+st.ErasureID+"/history", "")
		if code != http.StatusOK || json.Unmarshal(body, &h) != nil || len(h.Revisions) != 2 {
			t.Fatalf("history of the erasure: %d %s", code, body)
		}
		var req struct {
			FarmerID string `json:"farmer_id"`
			Reason   string `json:"reason"`
		}
		if err := json.Unmarshal(decodeBytes(t, h.Revisions[0].Payload), &req); err != nil || h.Revisions[0].Kind != "farmer.erasure.requested" ||
			req.FarmerID != gone.id || req.Reason != "data protection request, ticket 4711" {
			t.Errorf("revision 1: %s %s, want the request naming the farmer", h.Revisions[0].Kind, decodeBytes(t, h.Revisions[0].Payload))
		}
		var done struct {
			Subject  string  `json:"subject"`
			Redacted []int64 `json:"redacted"`
		}
		if err := json.Unmarshal(decodeBytes(t, h.Revisions[1].Payload), &done); err != nil || h.Revisions[1].Kind != "farmer.erasure.executed" ||
			done.Subject != "farmer "+gone.id {
			t.Fatalf("revision 2: %s %s, want the execution naming the farmer", h.Revisions[1].Kind, decodeBytes(t, h.Revisions[1].Payload))
		}
		var leaves []int64
		rows, _ := tani.DB.Query(ctx, `SELECT idx FROM ledger.entries WHERE type = 'revision' AND record_id = ANY($1) ORDER BY idx`,
			append(goneRecords, review))
		for rows.Next() {
			var i int64
			rows.Scan(&i)
			leaves = append(leaves, i)
		}
		if len(leaves) < 4 || fmt.Sprint(leaves) != fmt.Sprint(done.Redacted) {
			t.Errorf("erasure redacted leaves %v, want every revision of the farmer's %v (records and review decision)", done.Redacted, leaves)
		}
	})
	t.Run("ErrSyncRefusesTheFarmer", func(t *testing.T) {
		p := clienttest.Payloads(gone.id, uuid.NewString(), time.Now())
		p["farmer.registered"]["phone"] = "+62819" + digits(7)
		var batch []json.RawMessage
		for _, typ := range []string{"farmer.registered", "plot.mapped"} {
			raw, _, err := agent.Record(record.Type(typ), time.Now().Add(-time.Minute), gone.location(t), p[typ])
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, raw)
		}
		_, err := agent.Sync(ctx, batch)
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || len(apiErr.Fields) != 2 {
			t.Fatalf("sync: %v, want a 400 refusing both records", err)
		}
		for i, f := range apiErr.Fields {
			if f.Field != fmt.Sprintf("records[%d].payload.farmer_id", i) || f.Message != "farmer was erased" {
				t.Errorf("field error %+v, want records[%d].payload.farmer_id: farmer was erased", f, i)
			}
		}
	})
	t.Run("ErrIngestRefusesTheFarmer", func(t *testing.T) {
		// A validly signed record about the farmer that reaches the stream
		// anyway (published before the erasure, or behind mobile-api's
		// back): ingest refuses it and deletes it, dead-letters nothing.
		p := clienttest.Payloads(gone.id, gone.plot, time.Now())
		raw, id, err := agent.Record("crop.planted", time.Now().Add(-time.Minute), gone.location(t), p["crop.planted"])
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(natsbus.SubjectSubmittedPrefix + "crop.planted")
		msg.Data = raw
		msg.Header.Set(jetstream.MsgIDHeader, id)
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := js.Stream(ctx, natsbus.StreamFarm)
		eventually(t, 30*time.Second, "the refused record's message deleted", func() (bool, string) {
			_, err := st.GetMsg(ctx, ack.Sequence)
			return errors.Is(err, jetstream.ErrMsgNotFound), fmt.Sprint(err)
		})
		var n int
		tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, id).Scan(&n)
		if n != 0 {
			t.Error("ingest stored a record about an erased farmer")
		}
		if d := natstest.Count(t, js, natsbus.StreamDead, ""); d != 0 {
			t.Errorf("%d dead letters, want none: a refused record about an erased farmer is deleted, not kept", d)
		}
	})
	t.Run("OK_IngestExcisesTheFarmerFromABundle", func(t *testing.T) {
		// mobile-api sends a request's records of one type as a bundle:
		// ingest deletes the bundle and publishes again, and stores, the
		// records about the farmers not erased.
		var recs [][]byte
		var ids []string
		for _, f := range []*farmerData{gone, kept} {
			p := clienttest.Payloads(f.id, f.plot, time.Now())
			raw, id, err := agent.Record("crop.planted", time.Now().Add(-time.Minute), f.location(t), p["crop.planted"])
			if err != nil {
				t.Fatal(err)
			}
			recs, ids = append(recs, raw), append(ids, id)
		}
		msgs := natsbus.Bundle(natsbus.SubjectSubmittedPrefix+"crop.planted", recs, ids)
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want one bundle", len(msgs))
		}
		ack, err := js.PublishMsg(ctx, msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		st, _ := js.Stream(ctx, natsbus.StreamFarm)
		eventually(t, 30*time.Second, "the bundle deleted and the kept farmer's record stored", func() (bool, string) {
			_, err := st.GetMsg(ctx, ack.Sequence)
			var n int
			tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, ids[1]).Scan(&n)
			return errors.Is(err, jetstream.ErrMsgNotFound) && n == 1, fmt.Sprint(err, "; stored: ", n)
		})
		var n int
		tani.DB.QueryRow(ctx, `SELECT count(*) FROM ingest.submissions WHERE id = $1`, ids[0]).Scan(&n)
		if n != 0 {
			t.Error("ingest stored a record about an erased farmer")
		}
		last, err := st.GetLastMsgForSubject(ctx, natsbus.SubjectSubmittedPrefix+"crop.planted")
		if err != nil || !bytes.Equal(last.Data, recs[1]) || last.Sequence <= ack.Sequence {
			t.Errorf("last crop.planted message: %v %q; want the kept farmer's record alone, published again", err, last.Data)
		}
		if d := natstest.Count(t, js, natsbus.StreamDead, ""); d != 0 {
			t.Errorf("%d dead letters, want none", d)
		}
	})
	t.Run("OK_SyncDownForgetsTheFarmer", func(t *testing.T) {
		full := syncDown(t, tani, agent, "")
		for _, f := range full.Farmers {
			if f.FarmerID == gone.id {
				t.Error("a fresh sync-down still carries the erased farmer")
			}
		}
		next := syncDown(t, tani, agent, downBefore.Cursor)
		if fmt.Sprint(next.Erased) != fmt.Sprint([]string{gone.id}) {
			t.Errorf("sync-down since before the erasure: erased %v, want [%s] so the phone drops it", next.Erased, gone.id)
		}
	})
	t.Run("OK_AskingAgainReturnsTheSameErasure", func(t *testing.T) {
		again, err := admin.EraseFarmer(ctx, gone.id, "asked twice", "Dewi")
		if err != nil || again.ErasureID != st.ErasureID || again.State != "complete" {
			t.Errorf("got %+v %v, want erasure %s, complete", again, err, st.ErasureID)
		}
	})
}

// page is sync-down's answer, as the phone reads it.
type page struct {
	Farmers []struct {
		FarmerID string `json:"farmer_id"`
	} `json:"farmers"`
	Cursor string   `json:"cursor"`
	More   bool     `json:"more"`
	Erased []string `json:"erased"`
}

func syncDown(t *testing.T, tani *apptest.Running, a *clienttest.Agent, cursor string) page {
	t.Helper()
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := json.Marshal(map[string]string{"username": a.Username, "password": a.Password})
	resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, tani.URL+"/mobile/v1/farmers?cursor="+cursor, nil)
	req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p page
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sync-down: %d %v", resp.StatusCode, err)
	}
	return p
}

func getReceipt(t *testing.T, tani *apptest.Running, id string) []byte {
	t.Helper()
	var body []byte
	eventually(t, 30*time.Second, "receipt of "+id, func() (bool, string) {
		var code int
		code, body = adminDo(t, tani, http.MethodGet, "/ledger/v1/records/"+id+"/receipt", "")
		return code == http.StatusOK, string(body)
	})
	return body
}

// decodeBytes reads a JSON base64 string (how the ledger API returns
// payloads).
func decodeBytes(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var b []byte
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("payload %s: %v", raw, err)
	}
	return b
}

// searchDatabase looks for every secret in every text, character, JSON,
// array, bytea and geography column of every table of every schema, and
// for the binary values (hex-encoded) in every bytea column. It returns
// where it found them.
func searchDatabase(t *testing.T, tani *apptest.Running, secrets map[string]string, binary map[string][]byte) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := tani.DB.Query(ctx, `
		SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.udt_name
		FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
		  AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY')
		       OR c.udt_name IN ('geography', 'geometry'))`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct{ schema, table, name, typ, udt string }
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.schema, &c.table, &c.name, &c.typ, &c.udt); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if len(cols) < 60 {
		t.Fatalf("found only %d columns to search", len(cols))
	}
	var found []string
	for _, c := range cols {
		col := fmt.Sprintf("%q.%q.%q", c.schema, c.table, c.name)
		var exprs []string // text forms of the column to search
		switch {
		case c.typ == "bytea":
			exprs = []string{fmt.Sprintf("encode(%q, 'hex')", c.name), fmt.Sprintf("encode(%q, 'escape')", c.name)}
		case c.udt == "geography" || c.udt == "geometry":
			exprs = []string{fmt.Sprintf("ST_AsText(%q)", c.name)}
		default:
			exprs = []string{fmt.Sprintf("%q::text", c.name)}
		}
		needles := map[string]string{}
		for what, s := range secrets {
			needles[what] = s
		}
		if c.typ == "bytea" {
			for what, b := range binary {
				needles[what+" (raw)"] = hex.EncodeToString(b)
			}
			for what, s := range secrets {
				needles[what+" (as bytes)"] = hex.EncodeToString([]byte(s))
			}
		}
		for what, needle := range needles {
			for _, expr := range exprs {
				var n int
				q := fmt.Sprintf(`SELECT count(*) FROM %q.%q WHERE strpos(lower(%s), lower($1)) > 0`, c.schema, c.table, expr)
				if err := tani.DB.QueryRow(ctx, q, needle).Scan(&n); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				if n > 0 {
					found = append(found, fmt.Sprintf("%s holds the %s (%d rows)", col, what, n))
				}
			}
		}
	}
	return dedupe(found)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// searchStreams reads every message of every stream through the JetStream
// API and reports those whose data or headers hold a secret.
func searchStreams(t *testing.T, js jetstream.JetStream, secrets map[string]string) []string {
	t.Helper()
	ctx := context.Background()
	var found []string
	names := js.StreamNames(ctx)
	read := 0
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			msg, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s message %d: %v", name, seq, err)
			}
			read++
			var headers strings.Builder
			for k, vs := range msg.Header {
				headers.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
			for what, s := range secrets {
				if bytes.Contains(bytes.ToLower(msg.Data), []byte(strings.ToLower(s))) || strings.Contains(headers.String(), s) {
					found = append(found, fmt.Sprintf("%s message %d (%s) holds the %s", name, seq, msg.Subject, what))
				}
			}
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if read < 10 {
		t.Fatalf("read only %d messages: the other farmer's must be there", read)
	}
	return found
}
