// Package demo feeds a running Tani with plausible field records through
// the public mobile API, so a newcomer sees data flow after `make run`. It
// talks HTTP like a phone would and must never write to the database or
// NATS directly.
package demo

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/mobile-api/client"
)

// Feeder is one demo agent syncing a farm visit every interval.
type Feeder struct {
	baseURL       string
	operatorToken string
	interval      time.Duration
	logger        *slog.Logger
	rng           *rand.Rand
	agent         *client.Client
}

// New returns a feeder for the API at baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL, operatorToken string, interval time.Duration, logger *slog.Logger) *Feeder {
	return &Feeder{
		baseURL:       baseURL,
		operatorToken: operatorToken,
		interval:      interval,
		logger:        logger,
		rng:           rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42)),
	}
}

// setUp creates a field organization and an agent, logs in and enrolls a
// device, as an operator and a new agent would on day one.
func (f *Feeder) setUp(ctx context.Context) error {
	admin := client.NewAdmin(f.baseURL, f.operatorToken)
	suffix := time.Now().UTC().Format("20060102-150405")
	org, err := admin.CreateOrganization(ctx, "Demo cooperative "+suffix, "field")
	if err != nil {
		return fmt.Errorf("create organization: %w", err)
	}
	username, password := "demo"+strings.ReplaceAll(suffix, "-", ""), client.RandomPassword()
	if _, err := admin.CreateAgent(ctx, org, username, password, "Demo Agent", "Central Java"); err != nil {
		return fmt.Errorf("create agent: %w", err)
	}
	agent := client.New(f.baseURL, nil)
	if err := agent.Login(ctx, username, password); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	if _, err := agent.EnrollDevice(ctx, "demo phone", key); err != nil {
		return fmt.Errorf("enroll device: %w", err)
	}
	f.agent = agent
	f.logger.InfoContext(ctx, "demo agent ready", "username", username)
	return nil
}

// Run feeds until ctx is done. A failed batch is retried with the same
// signed records, as a phone would.
func (f *Feeder) Run(ctx context.Context) error {
	if err := f.setUp(ctx); err != nil {
		return fmt.Errorf("demo set-up: %w", err)
	}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	var batch []json.RawMessage
	var first string
	for {
		if batch == nil {
			var err error
			if batch, first, err = f.visit(time.Now()); err != nil {
				return err
			}
		}
		results, err := f.agent.Sync(ctx, batch)
		if err != nil {
			f.logger.WarnContext(ctx, "demo batch not delivered; will retry", "err", err)
		} else {
			accepted := 0
			for _, r := range results {
				if r.Status == "accepted" {
					accepted++
				}
			}
			f.logger.InfoContext(ctx, "demo batch delivered", "records", len(batch), "accepted", accepted,
				"status", "GET "+f.baseURL+"/mobile/v1/records/"+first)
			batch = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

var (
	villages = []string{"Sukamaju", "Karanganyar", "Ngadirejo", "Sidomulyo", "Tegalrejo"}
	names    = []string{"Siti Aminah", "Budi Santoso", "Wayan Sudarsa", "Dewi Lestari", "Agus Salim", "Nyoman Ayu", "Slamet Riyadi"}
	crops    = []string{"rice", "maize", "coffee", "cocoa", "oil_palm"}
)

// visit makes one farmer's visit: registration, a mapped plot, a planting.
func (f *Feeder) visit(now time.Time) ([]json.RawMessage, string, error) {
	farmer, plot := uuid.NewString(), uuid.NewString()
	lat, lon := -7.0-f.rng.Float64()*0.5, 110.0+f.rng.Float64()*0.5 // Central Java
	d := 0.0005 + f.rng.Float64()*0.001
	ring := [][2]float64{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}
	at := now.Add(-time.Duration(f.rng.IntN(3600)) * time.Second)
	loc := client.Location{Lat: lat, Lon: lon, AccuracyM: 3 + f.rng.Float64()*5}
	areaHa := d * 111_320 * d * 110_540 / 10_000 * (0.8 + f.rng.Float64()*0.6) // what the farmer thinks
	planted := now.AddDate(0, 0, -f.rng.IntN(60))
	visits := []struct {
		typ     record.Type
		payload any
	}{
		{record.TypeFarmerRegistered, map[string]any{
			"farmer_id": farmer, "name": names[f.rng.IntN(len(names))], "village": villages[f.rng.IntN(len(villages))],
			"national_id": fmt.Sprintf("3374%012d", f.rng.Int64N(1e12)), "phone": fmt.Sprintf("+628%010d", f.rng.Int64N(1e10)),
			"gender": []string{"female", "male"}[f.rng.IntN(2)], "birth_year": 1950 + f.rng.IntN(55),
		}},
		{record.TypePlotMapped, map[string]any{
			"farmer_id": farmer, "plot_id": plot, "tenure": "owned", "gps_accuracy_m": loc.AccuracyM, "mock_location": false,
			"boundary":      map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
			"declared_area": map[string]any{"value": areaHa, "unit": "ha"},
		}},
		{record.TypeCropPlanted, map[string]any{
			"farmer_id": farmer, "plot_id": plot, "crop": crops[f.rng.IntN(len(crops))],
			"planted_on": planted.Format(time.DateOnly), "expected_harvest_on": planted.AddDate(0, 4, 0).Format(time.DateOnly),
		}},
	}
	var batch []json.RawMessage
	var first string
	for _, v := range visits {
		raw, id, err := f.agent.Record(v.typ, at, loc, v.payload)
		if err != nil {
			return nil, "", err
		}
		if first == "" {
			first = id
		}
		batch = append(batch, raw)
	}
	return batch, first, nil
}
