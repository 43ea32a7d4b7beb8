package attest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/record"
)

// loadDevices reads the enrolment of every device in the batch from
// mobile-api's public view.
func loadDevices(ctx context.Context, tx pgx.Tx, ins []Input) (map[string]*DeviceKey, error) {
	ids := make([]string, len(ins))
	for i, in := range ins {
		ids[i] = in.DeviceID
	}
	rows, err := tx.Query(ctx, `
		SELECT device_id::text, agent_id::text, region, public_key, revoked_at FROM mobile.device_keys WHERE device_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	out := map[string]*DeviceKey{}
	for rows.Next() {
		var id string
		d := &DeviceKey{}
		if err := rows.Scan(&id, &d.AgentID, &d.Region, &d.PublicKey, &d.RevokedAt); err != nil {
			return nil, fmt.Errorf("scan device: %w", err)
		}
		out[id] = d
	}
	return out, rows.Err()
}

// project adds the batch's records to attest's own projections before the
// rules run, so that records of one batch are compared with each other
// too (two plots of one sync overlapping are both flagged). Plots and
// farmers follow the newest capture; a farmer's home region is the region
// of the agent who registered them first.
//
// PostGIS measures every mapped boundary once, for the projection and for
// the rules: it returns, by index in ins, the facts of each plot.mapped
// record's own boundary, including those the projection keeps an older or
// another farmer's mapping for.
func (s *Service) project(ctx context.Context, tx pgx.Tx, ins []Input, devices map[string]*DeviceKey) (map[int]*PlotFacts, error) {
	var f struct {
		farmer, record, agent, region []string
		nid, phone                    [][]byte
		captured                      []time.Time
	}
	var p struct {
		i                                []int32
		plot, farmer, record, agent, wkt []string
		declared, lon, lat               []float64
		captured                         []time.Time
		newest                           []bool
	}
	var cy struct {
		record, farmer, plot, crop []string
		planted, expected          []time.Time
	}
	var h struct {
		record, farmer, plot, crop []string
		kg                         []float64
		on                         []time.Time
	}
	var sa struct {
		record, farmer, crop []string
		kg                   []float64
		on                   []time.Time
	}
	// Newest capture per farmer and plot, so one statement never updates a
	// row twice.
	newestFarmer, newestPlot := map[string]int{}, map[string]int{}
	for i, in := range ins {
		switch pl := in.Payload.(type) {
		case *record.FarmerRegistered:
			if j, ok := newestFarmer[pl.FarmerID]; !ok || ins[j].Env.Captured().Before(in.Env.Captured()) {
				newestFarmer[pl.FarmerID] = i
			}
		case *record.PlotMapped:
			if j, ok := newestPlot[pl.PlotID]; !ok || ins[j].Env.Captured().Before(in.Env.Captured()) {
				newestPlot[pl.PlotID] = i
			}
		}
	}
	for i, in := range ins {
		switch pl := in.Payload.(type) {
		case *record.FarmerRegistered:
			if newestFarmer[pl.FarmerID] != i {
				continue
			}
			region := ""
			if d := devices[in.DeviceID]; d != nil {
				region = d.Region
			}
			f.farmer = append(f.farmer, pl.FarmerID)
			f.record = append(f.record, in.Env.ID)
			f.agent = append(f.agent, in.AgentID)
			f.region = append(f.region, region)
			f.nid = append(f.nid, s.pii.NationalIDHash(pl.NationalID))
			f.phone = append(f.phone, s.pii.PhoneHash(pl.Phone))
			f.captured = append(f.captured, in.Env.Captured())
		case *record.PlotMapped:
			declared, _ := pl.DeclaredArea.Ha()
			p.i = append(p.i, int32(i))
			p.newest = append(p.newest, newestPlot[pl.PlotID] == i)
			p.lon, p.lat = append(p.lon, *in.Env.Location.Lon), append(p.lat, *in.Env.Location.Lat)
			p.plot = append(p.plot, pl.PlotID)
			p.farmer = append(p.farmer, pl.FarmerID)
			p.record = append(p.record, in.Env.ID)
			p.agent = append(p.agent, in.AgentID)
			p.wkt = append(p.wkt, pl.Boundary.WKT())
			p.declared = append(p.declared, declared)
			p.captured = append(p.captured, in.Env.Captured())
		case *record.CropPlanted:
			cy.record = append(cy.record, in.Env.ID)
			cy.farmer = append(cy.farmer, pl.FarmerID)
			cy.plot = append(cy.plot, pl.PlotID)
			cy.crop = append(cy.crop, pl.CropCode)
			cy.planted = append(cy.planted, day(pl.PlantedOn))
			cy.expected = append(cy.expected, day(pl.ExpectedHarvestOn))
		case *record.HarvestRecorded:
			kg, _ := pl.Quantity.Kg()
			h.record = append(h.record, in.Env.ID)
			h.farmer = append(h.farmer, pl.FarmerID)
			h.plot = append(h.plot, pl.PlotID)
			h.crop = append(h.crop, pl.CropCode)
			h.kg = append(h.kg, kg)
			h.on = append(h.on, day(pl.HarvestedOn))
		case *record.SaleRecorded:
			kg, _ := pl.Quantity.Kg()
			sa.record = append(sa.record, in.Env.ID)
			sa.farmer = append(sa.farmer, pl.FarmerID)
			sa.crop = append(sa.crop, pl.CropCode)
			sa.kg = append(sa.kg, kg)
			sa.on = append(sa.on, day(pl.SoldOn))
		}
	}
	if len(f.farmer) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.farmers AS f (farmer_id, record_id, agent_id, region, national_id_hmac, phone_hmac, captured_at)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bytea[], $6::bytea[], $7::timestamptz[])
			ON CONFLICT (farmer_id) DO UPDATE SET record_id = excluded.record_id, national_id_hmac = excluded.national_id_hmac,
			    phone_hmac = excluded.phone_hmac, captured_at = excluded.captured_at
			WHERE f.captured_at < excluded.captured_at`, f.farmer, f.record, f.agent, f.region, f.nid, f.phone, f.captured); err != nil {
			return nil, fmt.Errorf("project farmers: %w", err)
		}
	}
	measured := map[int]*PlotFacts{}
	if len(p.plot) > 0 {
		rows, _ := tx.Query(ctx, `
			WITH m AS MATERIALIZED (
			    SELECT u.*, g, ST_Area(g) / 10000 AS area, ST_IsValid(g::geometry) AS valid, ST_IsValidReason(g::geometry) AS reason,
			           ST_Distance(g, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography) AS distance
			    FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::float8[], $8::timestamptz[],
			                $9::float8[], $10::float8[], $11::bool[])
			         AS u(i, plot, farmer, record, agent, wkt, declared, captured, lon, lat, newest)
			    CROSS JOIN LATERAL ST_GeogFromText('SRID=4326;' || u.wkt) AS g),
			stored AS (
			    INSERT INTO attest.plots AS p (plot_id, farmer_id, record_id, agent_id, boundary, area_ha, declared_area_ha, valid, invalid_reason, captured_at)
			    SELECT m.plot, m.farmer, m.record, m.agent, m.g, m.area, m.declared, m.valid, nullif(m.reason, 'Valid Geometry'), m.captured
			    FROM m WHERE m.newest
			    ON CONFLICT (plot_id) DO UPDATE SET farmer_id = excluded.farmer_id, record_id = excluded.record_id, agent_id = excluded.agent_id,
			        boundary = excluded.boundary, area_ha = excluded.area_ha, declared_area_ha = excluded.declared_area_ha,
			        valid = excluded.valid, invalid_reason = excluded.invalid_reason, captured_at = excluded.captured_at
			    WHERE p.captured_at < excluded.captured_at AND p.farmer_id = excluded.farmer_id)
			SELECT i, area, valid, coalesce(reason, ''), distance FROM m`,
			p.i, p.plot, p.farmer, p.record, p.agent, p.wkt, p.declared, p.captured, p.lon, p.lat, p.newest)
		err := forEach(rows, func(r pgx.Rows) error {
			var i int32
			pf := &PlotFacts{}
			if err := r.Scan(&i, &pf.AreaHa, &pf.Valid, &pf.InvalidReason, &pf.DistanceM); err != nil {
				return err
			}
			pl := ins[i].Payload.(*record.PlotMapped)
			pf.FarmerID = pl.FarmerID
			pf.DeclaredHa, _ = pl.DeclaredArea.Ha()
			measured[int(i)] = pf
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("measure and project plots: %w", err)
		}
	}
	if len(cy.record) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.crop_cycles SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::date[], $6::date[])
			ON CONFLICT DO NOTHING`, cy.record, cy.farmer, cy.plot, cy.crop, cy.planted, cy.expected); err != nil {
			return nil, fmt.Errorf("project crop cycles: %w", err)
		}
	}
	if len(h.record) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.harvests SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::float8[], $6::date[])
			ON CONFLICT DO NOTHING`, h.record, h.farmer, h.plot, h.crop, h.kg, h.on); err != nil {
			return nil, fmt.Errorf("project harvests: %w", err)
		}
	}
	if len(sa.record) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.sales SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::date[])
			ON CONFLICT DO NOTHING`, sa.record, sa.farmer, sa.crop, sa.kg, sa.on); err != nil {
			return nil, fmt.Errorf("project sales: %w", err)
		}
	}
	return measured, nil
}

// loadEvidence gathers, for every record of the batch, what its rules
// compare it with: a fixed number of queries per batch, whatever its size.
//
// Lookups by the batch's ids are written as LATERAL subqueries fenced with
// OFFSET 0, so that each id probes its index and the cost follows the
// batch, not the table. Left to the planner, the same joins became hash
// joins over sequential scans whenever statistics lagged behind the table
// (a fresh database, a burst of syncs before autovacuum analyzes), and a
// batch then read every stored plot, harvest and planting.
func loadEvidence(ctx context.Context, tx pgx.Tx, ins []Input, measured map[int]*PlotFacts) ([]Evidence, error) {
	ev := make([]Evidence, len(ins))
	var own struct { // plot.mapped: the record's own boundary
		i           []int32
		wkt, farmer []string
	}
	var ref struct { // other records: the plot they name
		i        []int32
		plot     []string
		lon, lat []float64
	}
	farmerIdx := map[string][]int{}
	plotIdx := map[string][]int{}
	var farmers, plots []string
	// Only a sale is compared with its farmer's harvests and sales, and
	// only a harvest with its plot's harvests: the flows of the other
	// records' farmers and plots are not read.
	var saleFarmers, harvestPlots []string
	seenSale, seenHarvest := map[string]bool{}, map[string]bool{}
	for i, in := range ins {
		farmer := in.Payload.Farmer()
		if farmer != "" {
			if len(farmerIdx[farmer]) == 0 {
				farmers = append(farmers, farmer)
			}
			farmerIdx[farmer] = append(farmerIdx[farmer], i)
			if in.Env.Type == record.TypeSaleRecorded && !seenSale[farmer] {
				seenSale[farmer], saleFarmers = true, append(saleFarmers, farmer)
			}
		}
		if pid := in.Payload.Plot(); pid != "" && in.Env.Type == record.TypeHarvestRecorded && !seenHarvest[pid] {
			seenHarvest[pid], harvestPlots = true, append(harvestPlots, pid)
		}
		lon, lat := *in.Env.Location.Lon, *in.Env.Location.Lat
		switch pl := in.Payload.(type) {
		case *record.PlotMapped:
			own.i = append(own.i, int32(i))
			own.wkt = append(own.wkt, pl.Boundary.WKT())
			own.farmer = append(own.farmer, pl.FarmerID)
		}
		if pid := in.Payload.Plot(); pid != "" {
			if len(plotIdx[pid]) == 0 {
				plots = append(plots, pid)
			}
			plotIdx[pid] = append(plotIdx[pid], i)
			if in.Env.Type != record.TypePlotMapped {
				ref.i = append(ref.i, int32(i))
				ref.plot = append(ref.plot, pid)
				ref.lon, ref.lat = append(ref.lon, lon), append(ref.lat, lat)
			}
		}
	}

	for i, pf := range measured {
		ev[i].Plot = pf
	}
	if len(own.i) > 0 {
		// Overlaps with other farmers' plots, through the GiST index. Only
		// valid polygons are intersected (GEOS refuses invalid ones).
		rows, _ := tx.Query(ctx, `
			SELECT u.i, o.plot_id::text, o.farmer_id::text, ST_Area(ST_Intersection(g, o.boundary)) / 10000, least(ST_Area(g) / 10000, o.area_ha)
			FROM unnest($1::int[], $2::text[], $3::uuid[]) AS u(i, wkt, farmer)
			CROSS JOIN LATERAL ST_GeogFromText('SRID=4326;' || u.wkt) AS g
			JOIN attest.plots o ON ST_Intersects(g, o.boundary) AND o.farmer_id <> u.farmer AND o.valid
			WHERE ST_IsValid(g::geometry)`, own.i, own.wkt, own.farmer)
		err := forEach(rows, func(r pgx.Rows) error {
			var i int32
			var o Overlap
			if err := r.Scan(&i, &o.PlotID, &o.FarmerID, &o.Ha, &o.SmallerHa); err != nil {
				return err
			}
			ev[i].Overlaps = append(ev[i].Overlaps, o)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find overlaps: %w", err)
		}
	}
	if len(ref.i) > 0 {
		rows, _ := tx.Query(ctx, `
			SELECT u.i, p.farmer_id::text, p.area_ha, p.declared_area_ha, p.valid,
			       ST_Distance(p.boundary, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography)
			FROM unnest($1::int[], $2::uuid[], $3::float8[], $4::float8[]) AS u(i, plot, lon, lat)
			CROSS JOIN LATERAL (SELECT * FROM attest.plots p WHERE p.plot_id = u.plot OFFSET 0) AS p`, ref.i, ref.plot, ref.lon, ref.lat)
		err := forEach(rows, func(r pgx.Rows) error {
			var i int32
			pf := &PlotFacts{}
			if err := r.Scan(&i, &pf.FarmerID, &pf.AreaHa, &pf.DeclaredHa, &pf.Valid, &pf.DistanceM); err != nil {
				return err
			}
			ev[i].Plot = pf
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load referenced plots: %w", err)
		}
	}
	if len(farmers) > 0 {
		rows, _ := tx.Query(ctx, `SELECT farmer_id::text, region, agent_id::text FROM attest.farmers WHERE farmer_id = ANY($1::uuid[])`, farmers)
		err := forEach(rows, func(r pgx.Rows) error {
			var id string
			h := &FarmerHome{}
			if err := r.Scan(&id, &h.Region, &h.AgentID); err != nil {
				return err
			}
			for _, i := range farmerIdx[id] {
				ev[i].Farmer = h
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load farmers: %w", err)
		}
		// Other farmers sharing a registration's national ID or phone.
		rows, _ = tx.Query(ctx, `
			SELECT me.farmer_id::text, f.farmer_id::text, f.agent_id::text,
			       CASE WHEN f.national_id_hmac = me.national_id_hmac THEN 'national_id' ELSE 'phone' END
			FROM attest.farmers me
			JOIN attest.farmers f ON f.farmer_id <> me.farmer_id AND (f.national_id_hmac = me.national_id_hmac OR f.phone_hmac = me.phone_hmac)
			WHERE me.farmer_id = ANY($1::uuid[])`, farmers)
		err = forEach(rows, func(r pgx.Rows) error {
			var me string
			var d Duplicate
			if err := r.Scan(&me, &d.FarmerID, &d.AgentID, &d.Via); err != nil {
				return err
			}
			for _, i := range farmerIdx[me] {
				if ins[i].Env.Type == record.TypeFarmerRegistered {
					ev[i].Duplicates = append(ev[i].Duplicates, d)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find duplicate identities: %w", err)
		}
	}
	if len(saleFarmers) > 0 || len(harvestPlots) > 0 {
		// Harvests and sales of the sales' farmers and the harvests'
		// plots (for yields), leaving out rejected records.
		rows, _ := tx.Query(ctx, `
			SELECT 'h', h.record_id::text, h.farmer_id::text, h.plot_id::text, h.crop, h.quantity_kg, h.harvested_on
			FROM (SELECT h.* FROM unnest($1::uuid[]) AS u(farmer)
			      CROSS JOIN LATERAL (SELECT * FROM attest.harvests h WHERE h.farmer_id = u.farmer OFFSET 0) AS h
			      UNION
			      SELECT h.* FROM unnest($2::uuid[]) AS u(plot)
			      CROSS JOIN LATERAL (SELECT * FROM attest.harvests h WHERE h.plot_id = u.plot OFFSET 0) AS h) AS h
			LEFT JOIN attest.records r USING (record_id)
			WHERE r.status IS DISTINCT FROM 'rejected'
			UNION ALL
			SELECT 's', s.record_id::text, s.farmer_id::text, '', s.crop, s.quantity_kg, s.sold_on
			FROM unnest($1::uuid[]) AS u(farmer)
			CROSS JOIN LATERAL (SELECT * FROM attest.sales s WHERE s.farmer_id = u.farmer OFFSET 0) AS s
			LEFT JOIN attest.records r USING (record_id)
			WHERE r.status IS DISTINCT FROM 'rejected'`, saleFarmers, harvestPlots)
		err := forEach(rows, func(r pgx.Rows) error {
			var kind, farmer string
			var fl Flow
			if err := r.Scan(&kind, &fl.RecordID, &farmer, &fl.PlotID, &fl.Crop, &fl.Kg, &fl.On); err != nil {
				return err
			}
			if kind == "s" {
				for _, i := range farmerIdx[farmer] {
					if ins[i].Env.Type == record.TypeSaleRecorded {
						ev[i].Sales = append(ev[i].Sales, fl)
					}
				}
				return nil
			}
			for _, i := range farmerIdx[farmer] {
				if ins[i].Env.Type == record.TypeSaleRecorded {
					ev[i].Harvests = append(ev[i].Harvests, fl)
				}
			}
			for _, i := range plotIdx[fl.PlotID] {
				if ins[i].Env.Type == record.TypeHarvestRecorded {
					ev[i].Harvests = append(ev[i].Harvests, fl)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load harvests and sales: %w", err)
		}
	}
	if len(plots) > 0 {
		rows, _ := tx.Query(ctx, `
			SELECT c.plot_id::text, c.crop, c.planted_on, c.expected_harvest_on
			FROM unnest($1::uuid[]) AS u(plot)
			CROSS JOIN LATERAL (SELECT * FROM attest.crop_cycles c WHERE c.plot_id = u.plot OFFSET 0) AS c`, plots)
		err := forEach(rows, func(r pgx.Rows) error {
			var plot string
			var c Cycle
			if err := r.Scan(&plot, &c.Crop, &c.PlantedOn, &c.ExpectedHarvestOn); err != nil {
				return err
			}
			for _, i := range plotIdx[plot] {
				ev[i].Cycles = append(ev[i].Cycles, c)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load crop cycles: %w", err)
		}
	}
	return ev, nil
}

// forEach scans every row; a query error surfaces from rows.Err.
func forEach(rows pgx.Rows, fn func(pgx.Rows) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
