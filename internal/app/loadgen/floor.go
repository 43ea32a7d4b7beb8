package loadgen

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/mobile-api/client"
)

// floorSchema is the scratch schema the floor loads into; it is dropped
// and created again for every load, and dropped afterwards.
const floorSchema = "tani_floor"

// floorTable is what the floor stores: for every record the row
// ingest.submissions gets (the protected record as jsonb, the sealed
// original, its hash, stream sequence, device and agent), and a plot's
// boundary as a PostGIS geography, with the indexes ingest's tables have
// on them: the primary key, (type, ingested_at), the farmer of the payload
// and the boundary's GiST index.
const floorTable = `
	CREATE TABLE ` + floorSchema + `.records (
	    id            uuid PRIMARY KEY,
	    type          text        NOT NULL,
	    captured_at   timestamptz NOT NULL,
	    payload       jsonb       NOT NULL,
	    sealed_record bytea       NOT NULL,
	    content_hash  bytea       NOT NULL CHECK (length(content_hash) = 32),
	    stream_seq    bigint      NOT NULL,
	    device_id     uuid        NOT NULL,
	    agent_id      uuid        NOT NULL,
	    boundary      geography(Polygon, 4326),
	    ingested_at   timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX ON ` + floorSchema + `.records (type, ingested_at);
	CREATE INDEX ON ` + floorSchema + `.records (lower(payload->>'farmer_id'));
	CREATE INDEX ON ` + floorSchema + `.records USING gist (boundary);`

const floorColumns = "id, type, captured_at, payload, sealed_record, content_hash, stream_seq, device_id, agent_id, boundary"

// InsertBatch is how many rows the INSERT floor commits per transaction:
// ingest's default batch.
const InsertBatch = 256

// floorRow is one record as ingest would store it.
type floorRow struct {
	id, typ, device, agent string
	captured               time.Time
	payload                string
	sealed                 []byte
	hash                   [32]byte
	seq                    int64
	boundary               *string // EWKT of a plot's boundary
}

// Floor is the reference the capture path is held to: the rows of the
// same records, as ingest stores them, written by Postgres's fastest path
// (one COPY) and by plain INSERTs in ingest's transaction size, into a
// scratch schema of db. No HTTP, no signature, no queue: what is left is
// what storing those rows costs the database on this machine.
type Floor struct {
	db   *pgxpool.Pool
	rows []floorRow
	csv  []byte
	// binary is the same rows as a binary COPY stream, as the server
	// writes them (see binaryOf).
	binary    []byte
	polygons  int
	jsonBytes int
	sealed    int
}

// PrepareFloor signs cfg.Records records of the load's mix with cfg.Agents
// devices, reads each the way ingest does and keeps the rows ingest
// would store, all before any clock starts. db must have PostGIS.
func PrepareFloor(ctx context.Context, cfg Config, db *pgxpool.Pool) (*Floor, error) {
	now := time.Now()
	key := make([]byte, pii.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	keys, err := pii.New(key)
	if err != nil {
		return nil, err
	}
	agents := make([]*agent, cfg.Agents)
	for i := range agents {
		_, dk, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		c := client.New("http://floor.invalid", nil)
		c.UseDevice(uuid.NewString(), dk)
		a := &agent{id: uuid.NewString(), c: c}
		g := newGenerator(uint64(i), now)
		for range farmersPerAgent(cfg) {
			a.farms = append(a.farms, g.newFarm())
		}
		agents[i] = a
	}
	jobs, err := sign(cfg, agents, now, cfg.Records, timedSeed)
	if err != nil {
		return nil, err
	}
	v := validate.New()
	f := &Floor{db: db}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for _, j := range jobs {
		for _, raw := range j.records {
			rec, problems := record.Check(v, raw, now)
			if len(problems) > 0 {
				return nil, fmt.Errorf("floor record %s: %v", rec.Env.ID, problems)
			}
			protected, err := record.Protected(rec.Canonical, keys)
			if err != nil {
				return nil, err
			}
			payload, err := record.PayloadOf(protected)
			if err != nil {
				return nil, err
			}
			row := floorRow{
				id: rec.Env.ID, typ: string(rec.Env.Type), device: rec.Env.DeviceID, agent: j.agent.id,
				captured: rec.Env.Captured(), payload: string(payload), sealed: keys.Encrypt(string(rec.Canonical)),
				hash: record.Hash(rec.Canonical), seq: int64(len(f.rows) + 1),
			}
			if p, ok := rec.Payload.(*record.PlotMapped); ok {
				wkt := "SRID=4326;" + p.Boundary.WKT()
				row.boundary = &wkt
				f.polygons++
			}
			f.jsonBytes, f.sealed = f.jsonBytes+len(row.payload), f.sealed+len(row.sealed)
			f.rows = append(f.rows, row)
			boundary := ""
			if row.boundary != nil {
				boundary = *row.boundary
			}
			if err := w.Write([]string{
				row.id, row.typ, row.captured.Format(time.RFC3339Nano), row.payload,
				`\x` + hex.EncodeToString(row.sealed), `\x` + hex.EncodeToString(row.hash[:]), strconv.FormatInt(row.seq, 10),
				row.device, row.agent, boundary,
			}); err != nil {
				return nil, err
			}
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}
	f.csv = buf.Bytes()
	if f.binary, err = f.binaryOf(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// binaryOf loads the CSV rows once, before any clock, and returns them as
// the server writes them back by binary COPY: the stream of the binary
// floor, whose every field (the geography's EWKB among them) is the
// server's own encoding.
func (f *Floor) binaryOf(ctx context.Context) ([]byte, error) {
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("floor connection: %w", err)
	}
	defer conn.Release()
	drop, err := f.reset(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	defer drop()
	pc := conn.Conn().PgConn()
	if _, err := pc.CopyFrom(ctx, bytes.NewReader(f.csv), copyCSV); err != nil {
		return nil, fmt.Errorf("copy %d rows: %w", len(f.rows), err)
	}
	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY "+floorSchema+".records ("+floorColumns+") TO STDOUT (FORMAT binary)"); err != nil {
		return nil, fmt.Errorf("copy %d rows out in binary: %w", len(f.rows), err)
	}
	return out.Bytes(), nil
}

// reset gives the floor a fresh, empty table on conn, and returns what
// drops it again.
func (f *Floor) reset(ctx context.Context, conn *pgx.Conn) (drop func(), err error) {
	reset := "DROP SCHEMA IF EXISTS " + floorSchema + " CASCADE; CREATE SCHEMA " + floorSchema + ";" + floorTable
	if _, err := conn.Exec(ctx, reset); err != nil {
		return nil, fmt.Errorf("create floor table: %w", err)
	}
	return func() { conn.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+floorSchema+" CASCADE") }, nil
}

// The floor's COPY statements.
const (
	copyCSV    = "COPY " + floorSchema + ".records (" + floorColumns + ") FROM STDIN WITH (FORMAT csv)"
	copyBinary = "COPY " + floorSchema + ".records (" + floorColumns + ") FROM STDIN WITH (FORMAT binary)"
)

// Rows is how many rows each load writes.
func (f *Floor) Rows() int { return len(f.rows) }

// Measures are the three loads: COPY of CSV, binary COPY and batched
// INSERTs. The goals are held to the CSV COPY; the binary one is the
// stricter floor beside it, since Tani's own bulk writes are binary
// COPYs and the server's CSV parsing is what varies most from one
// machine to another (docs/performance.md, "ninth session").
func (f *Floor) Measures() []Measure {
	n := max(1, len(f.rows))
	what := fmt.Sprintf("%d rows (on average %d bytes of jsonb payload and %d of sealed record; %d with a PostGIS polygon), ingest.submissions' columns and indexes + a GiST-indexed geography, fresh table",
		len(f.rows), f.jsonBytes/n, f.sealed/n, f.polygons)
	return []Measure{
		{Name: "copy", Unit: "rows/s", Desc: "one COPY … FROM STDIN (CSV) of " + what, Run: f.runCopy},
		{Name: "copy-binary", Unit: "rows/s", Desc: "one COPY … FROM STDIN (FORMAT binary) of the same rows, as the server writes them out by binary COPY", Run: f.runCopyBinary},
		{Name: "insert", Unit: "rows/s", Desc: fmt.Sprintf("INSERTs, %d per transaction (pipelined, one commit each), of %s", InsertBatch, what), Run: f.runInsert},
	}
}

// load times fn on a fresh table and checks afterwards that every row
// and polygon is there.
func (f *Floor) load(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) (Sample, error) {
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		return Sample{}, fmt.Errorf("floor connection: %w", err)
	}
	defer conn.Release()
	drop, err := f.reset(ctx, conn.Conn())
	if err != nil {
		return Sample{}, err
	}
	defer drop()
	backend := int(conn.Conn().PgConn().PID())
	var meter cpuMeter
	meter.add("postgres CPU", func() (time.Duration, error) { return processCPU(backend) })
	meter.begin()
	start := time.Now()
	if err := fn(ctx, conn.Conn()); err != nil {
		return Sample{}, err
	}
	took := time.Since(start)
	cpu := meter.end(len(f.rows))
	var rows, polygons int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(boundary) FROM "+floorSchema+".records").Scan(&rows, &polygons); err != nil {
		return Sample{}, fmt.Errorf("count floor rows: %w", err)
	}
	if rows != len(f.rows) || polygons != f.polygons {
		return Sample{}, fmt.Errorf("floor stored %d rows with %d polygons, want %d with %d", rows, polygons, len(f.rows), f.polygons)
	}
	return Sample{Value: perSecond(rows, took), Side: cpu}, nil
}

func (f *Floor) runCopy(ctx context.Context, _ int) (Sample, error) {
	return f.load(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(f.csv), copyCSV); err != nil {
			return fmt.Errorf("copy %d rows: %w", len(f.rows), err)
		}
		return nil
	})
}

func (f *Floor) runCopyBinary(ctx context.Context, _ int) (Sample, error) {
	return f.load(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(f.binary), copyBinary); err != nil {
			return fmt.Errorf("copy %d rows in binary: %w", len(f.rows), err)
		}
		return nil
	})
}

func (f *Floor) runInsert(ctx context.Context, _ int) (Sample, error) {
	const insert = "INSERT INTO " + floorSchema + ".records (" + floorColumns + ") VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, ST_GeogFromText($10))"
	return f.load(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		for i := 0; i < len(f.rows); i += InsertBatch {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				b := &pgx.Batch{}
				for _, r := range f.rows[i:min(i+InsertBatch, len(f.rows))] {
					b.Queue(insert, r.id, r.typ, r.captured, r.payload, r.sealed, r.hash[:], r.seq, r.device, r.agent, r.boundary)
				}
				return tx.SendBatch(ctx, b).Close()
			})
			if err != nil {
				return fmt.Errorf("insert rows %d–%d: %w", i+1, min(i+InsertBatch, len(f.rows)), err)
			}
		}
		return nil
	})
}
