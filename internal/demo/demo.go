// Package demo feeds a running Tani with plausible field records through
// the public mobile API, so a newcomer sees data flow after `make run`. It
// talks HTTP like a phone would and must never write to the database or
// NATS directly.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Feeder posts a small batch of records every interval.
type Feeder struct {
	baseURL  string
	interval time.Duration
	logger   *slog.Logger
	client   *http.Client
	rng      *rand.Rand
}

// New returns a feeder for the API at baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL string, interval time.Duration, logger *slog.Logger) *Feeder {
	return &Feeder{
		baseURL:  baseURL,
		interval: interval,
		logger:   logger,
		client:   &http.Client{Timeout: 30 * time.Second},
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42)),
	}
}

// Run feeds until ctx is done. Failed batches are logged and retried with
// the same record ids, as a phone would.
func (f *Feeder) Run(ctx context.Context) error {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	var batch []map[string]any
	for {
		if batch == nil {
			batch = f.batch(time.Now())
		}
		accepted, err := f.send(ctx, batch)
		if err != nil {
			f.logger.WarnContext(ctx, "demo batch not delivered; will retry", "err", err)
		} else {
			f.logger.InfoContext(ctx, "demo batch delivered", "records", len(batch), "accepted", accepted,
				"example", f.baseURL+"/mobile/v1/records/"+batch[0]["id"].(string))
			batch = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (f *Feeder) send(ctx context.Context, batch []map[string]any) (int, error) {
	body, err := json.Marshal(map[string]any{"records": batch})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.baseURL+"/mobile/v1/sync", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Status string `json:"status"`
		} `json:"results"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("sync answered %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("decode sync answer: %w", err)
	}
	n := 0
	for _, r := range out.Results {
		if r.Status == "accepted" {
			n++
		}
	}
	return n, nil
}

var (
	villages = []string{"Sukamaju", "Karanganyar", "Ngadirejo", "Sidomulyo", "Tegalrejo"}
	names    = []string{"Siti Aminah", "Budi Santoso", "Wayan Sudarsa", "Dewi Lestari", "Agus Salim", "Nyoman Ayu", "Slamet Riyadi"}
	crops    = []string{"rice", "maize", "coffee", "cocoa", "oil_palm"}
)

// batch makes one farmer's visit: registration, a mapped plot, a planting.
func (f *Feeder) batch(now time.Time) []map[string]any {
	farmer := uuid.NewString()
	plot := uuid.NewString()
	lat, lon := -7.0-f.rng.Float64()*0.5, 110.0+f.rng.Float64()*0.5 // Central Java
	d := 0.0005 + f.rng.Float64()*0.001
	ring := [][]float64{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}
	at := now.UTC().Add(-time.Duration(f.rng.IntN(3600)) * time.Second).Format(time.RFC3339)
	return []map[string]any{
		{"id": farmer, "type": "farmer.registered", "captured_at": at, "payload": map[string]any{
			"farmer_id": farmer, "name": names[f.rng.IntN(len(names))], "village": villages[f.rng.IntN(len(villages))],
			"birth_year": 1950 + f.rng.IntN(55),
		}},
		{"id": plot, "type": "plot.mapped", "captured_at": at, "payload": map[string]any{
			"farmer_id": farmer, "plot_id": plot,
			"boundary":         map[string]any{"type": "Polygon", "coordinates": [][][]float64{ring}},
			"declared_area_ha": d * d * 1.2e4 * (0.8 + f.rng.Float64()*0.6),
		}},
		{"id": uuid.NewString(), "type": "crop.planted", "captured_at": at, "payload": map[string]any{
			"plot_id": plot, "crop": crops[f.rng.IntN(len(crops))], "planted_on": now.AddDate(0, 0, -f.rng.IntN(60)).Format(time.DateOnly),
		}},
	}
}
