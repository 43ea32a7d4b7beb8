package verify_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tani-platform/tani/ledger/verify"
)

func TestEntry(t *testing.T) {
	rev := verify.Entry{
		Type: verify.TypeRevision, RecordID: "7f1c2a9e-0000-4000-8000-000000000001", Kind: "plot.mapped", Revision: 3,
		PayloadHash: sha256.Sum256([]byte(`{"area_m2":1200}`)), OccurredAt: time.Date(2026, 3, 1, 8, 0, 0, 5000, time.UTC),
		SignatureRef: "device:abc/sig:1", LoggedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
	}
	t.Run("OKRoundTrip", func(t *testing.T) {
		for _, e := range []verify.Entry{rev, {Type: verify.TypeRedaction, RecordID: "r", Revision: 2, Target: 17, Reason: "consent withdrawn", LoggedAt: rev.LoggedAt}} {
			data, err := e.Marshal()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got, err := verify.ParseEntry(data)
			if err != nil {
				t.Fatalf("parse %q: %v", data, err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("ErrNotCanonical", func(t *testing.T) {
		data, err := rev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for name, bad := range map[string]string{
			"trailing space":   strings.Replace(string(data), "kind plot.mapped", "kind plot.mapped ", 1),
			"leading zero":     strings.Replace(string(data), "revision 3", "revision 03", 1),
			"extra field":      string(data) + "extra x\n",
			"no final newline": strings.TrimSuffix(string(data), "\n"),
			"other time zone":  strings.Replace(string(data), "09:00:00.000000Z", "09:00:00.000000+00:00", 1),
		} {
			if _, err := verify.ParseEntry([]byte(bad)); err == nil {
				t.Errorf("%s: got nil error, want the entry rejected", name)
			}
		}
	})
	t.Run("ErrInvalidField", func(t *testing.T) {
		for name, e := range map[string]verify.Entry{
			"newline in id": func() verify.Entry { e := rev; e.RecordID = "a\nb"; return e }(),
			"empty kind":    func() verify.Entry { e := rev; e.Kind = ""; return e }(),
			"revision 0":    func() verify.Entry { e := rev; e.Revision = 0; return e }(),
			"no occurred":   func() verify.Entry { e := rev; e.OccurredAt = time.Time{}; return e }(),
		} {
			if _, err := e.Marshal(); err == nil {
				t.Errorf("%s: got nil error, want the entry rejected", name)
			}
		}
	})
}

var ledgerTime = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func TestStamp(t *testing.T) {
	e := verify.Entry{
		Type: verify.TypeRevision, RecordID: "7f1c2a9e-0000-4000-8000-000000000001", Kind: "plot.mapped", Revision: 3,
		PayloadHash: sha256.Sum256([]byte(`{"area_m2":1200}`)), OccurredAt: time.Date(2026, 3, 1, 8, 0, 0, 5000, time.UTC),
		SignatureRef: "device:abc/sig:1", LoggedAt: time.Unix(0, 0),
	}
	t.Run("OK", func(t *testing.T) {
		placeholder, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.FixedZone("EAT", 3*3600))
		got, err := verify.Stamp(placeholder, at)
		if err != nil {
			t.Fatal(err)
		}
		e.LoggedAt = at.Truncate(time.Microsecond)
		want, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("got %q, want %q", got, want)
		}
		if parsed, err := verify.ParseEntry(got); err != nil || !parsed.LoggedAt.Equal(e.LoggedAt) {
			t.Errorf("parse stamped entry: got %v, %v, want logged at %v", parsed.LoggedAt, err, e.LoggedAt)
		}
	})
	t.Run("ErrNoLogTime", func(t *testing.T) {
		for _, data := range []string{"", "logged 2026", "tani.ledger/entry/v1\ntype revision\n"} {
			if _, err := verify.Stamp([]byte(data), time.Now()); err == nil {
				t.Errorf("stamp %q: got no error", data)
			}
		}
	})
}

// TestEntryTimes checks the times of an entry against the standard
// library's formatting of its time layout, across the years it writes by
// hand and beyond.
func TestEntryTimes(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 3, 1, 9, 5, 7, 123456789, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 1000, time.FixedZone("EAT", 3*3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0),
	} {
		e := verify.Entry{Type: verify.TypeRevision, RecordID: "r", Kind: "k", Revision: 1, OccurredAt: at, LoggedAt: at}
		data, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want := at.UTC().Format("2006-01-02T15:04:05.000000Z")
		if !strings.Contains(string(data), "\noccurred "+want+"\n") || !strings.HasSuffix(string(data), "\nlogged "+want+"\n") {
			t.Errorf("%v: got %q, want both times as %s", at, data, want)
		}
	}
}
