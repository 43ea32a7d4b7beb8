package mobileapi_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// BenchmarkSyncHostileRecord posts to /sync one plot.mapped record signed
// with a key that is not the device's, as issue 11's attacker did, and
// reports the CPU the whole process spends per request (reading and
// decoding the body, checking the record, answering 400). Before one parse
// and cheap checks first, a 3.9 MB record cost 4–5.5 s of CPU in the
// quadratic self-intersection check that ran before the signature.
func BenchmarkSyncHostileRecord(b *testing.B) {
	tani := apptest.MustStart(b)
	agent := clienttest.MustAgent(b, tani.URL, tani.OperatorToken, "Central Java")
	_, wrongKey, _ := ed25519.GenerateKey(nil)
	agent.UseDevice(agent.DeviceID, wrongKey)
	token := benchToken(b, tani, agent)
	for _, size := range []struct {
		name      string
		positions int
	}{{"3.9MB", 106_000}, {"1MB", 26_000}} {
		ring := make([][2]float64, size.positions+1)
		for i := range size.positions {
			a := 2 * math.Pi * float64(i) / float64(size.positions)
			ring[i] = [2]float64{110.4 + 0.001*math.Cos(a) + 1e-13, -7.25 + 0.001*math.Sin(a) + 1e-13}
		}
		ring[size.positions] = ring[0]
		raw, _, err := agent.Record("plot.mapped", time.Now().Add(-time.Minute), loc, map[string]any{
			"farmer_id": uuid.NewString(), "plot_id": uuid.NewString(),
			"boundary":      map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
			"declared_area": map[string]any{"value": 1, "unit": "ha"}, "tenure": "owned", "gps_accuracy_m": 3, "mock_location": false,
		})
		if err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{"records": []json.RawMessage{raw}})
		b.Run(size.name+"_BadSignature", func(b *testing.B) {
			b.Logf("request body %d bytes", len(body))
			b.SetBytes(int64(len(body)))
			start := processCPU()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, tani.URL+"/mobile/v1/sync", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					b.Fatalf("status %d, want 400", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(processCPU()-start)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

func benchToken(b *testing.B, tani *apptest.Running, a *clienttest.Agent) string {
	b.Helper()
	resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json", jsonBody(map[string]string{"username": a.Username, "password": a.Password}))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&pair)
	return pair.AccessToken
}

// processCPU is the process's user and system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
