package mobileapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

func TestRecordWithMedia(t *testing.T) {
	tani := apptest.MustStart(t)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	photo := make([]byte, 40_000)
	rand.Read(photo)
	copy(photo, "\x89PNG\r\n\x1a\n")
	h := sha256.Sum256(photo)
	hash := hex.EncodeToString(h[:])

	payload := clienttest.Payloads(uuid.NewString(), "", time.Now())["farmer.registered"]
	payload["photo_hash"] = hash
	raw, id, err := agent.Record("farmer.registered", time.Now().Add(-time.Hour), loc, payload)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OK_IncompleteWhilePhotoMissing", func(t *testing.T) {
		if res := mustSync(t, agent, raw); res[0].Status != mobileapi.Accepted {
			t.Fatalf("sync: %+v, want accepted", res[0])
		}
		// Even once ingest has the record, it stays incomplete: wait for
		// ingest, then look again.
		polltest.Eventually(t, 30*time.Second, func() error {
			var ingested bool
			if err := tani.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ingest.record_status WHERE id = $1 AND status = 'ingested')`, id).Scan(&ingested); err != nil {
				return err
			}
			if !ingested {
				return fmt.Errorf("record %s not ingested", id)
			}
			return nil
		})
		st, err := agent.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != mobileapi.Incomplete || st.Reason == nil || !strings.Contains(*st.Reason, hash) {
			t.Errorf("status = %q, reason %v; want %q naming %s", st.Status, st.Reason, mobileapi.Incomplete, hash)
		}
	})

	t.Run("OK_IngestedOncePhotoUploaded", func(t *testing.T) {
		got, err := agent.UploadMedia(ctx, bytes.NewReader(photo), int64(len(photo)), "image/png")
		if err != nil {
			t.Fatalf("UploadMedia: %v", err)
		}
		if got != hash {
			t.Fatalf("uploaded hash %s, want %s", got, hash)
		}
		if st := waitStatus(t, agent, id, "ingested"); st.Reason != nil && strings.Contains(*st.Reason, "media") {
			t.Errorf("reason = %q, still waiting for media", *st.Reason)
		}
	})

	t.Run("OK_NoMediaNoWait", func(t *testing.T) {
		raw, id := signed(t, agent, "farmer.registered", uuid.NewString(), "")
		mustSync(t, agent, raw)
		waitStatus(t, agent, id, "ingested")
	})
}
