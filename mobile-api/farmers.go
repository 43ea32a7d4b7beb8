package mobileapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/postgres"
)

// FarmerProfile is what an agent's phone keeps offline about a farmer it
// serves: never the national ID or the phone number.
type FarmerProfile struct {
	FarmerID  string        `json:"farmer_id"`
	Name      string        `json:"name"`
	Village   string        `json:"village"`
	Gender    string        `json:"gender"`
	BirthYear int           `json:"birth_year"`
	PhotoHash *string       `json:"photo_hash,omitempty"`
	UpdatedAt time.Time     `json:"updated_at"`
	Plots     []PlotProfile `json:"plots"`
}

// PlotProfile is a plot with its PostGIS-measured area.
type PlotProfile struct {
	PlotID         string          `json:"plot_id"`
	Boundary       json.RawMessage `json:"boundary"` // GeoJSON Polygon
	AreaHa         float64         `json:"area_ha"`
	DeclaredAreaHa float64         `json:"declared_area_ha"`
	Tenure         string          `json:"tenure"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// FarmersPage is one page of sync-down.
type FarmersPage struct {
	Farmers []FarmerProfile `json:"farmers"`
	// Refused lists the agent's records refused after they were
	// acknowledged (status refused, with the reason) since the cursor.
	// It is filled on the first page of a sync only (a cursor from a
	// finished sync, or none), and a record may be listed again; the
	// phone upserts by id.
	Refused []RecordStatus `json:"refused"`
	// Cursor is passed back as ?cursor= to get the next page, or, when
	// More is false, the changes after this sync.
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
	// Erased lists farmers the agent served who were erased since the
	// cursor: the phone must delete everything it holds about them. Sent
	// on the first page of a sync after a previous one.
	Erased []string `json:"erased,omitempty"`
}

// downCursor is the opaque sync-down position: changes at or after Since,
// read in a window closed at Until, resuming after farmer After.
type downCursor struct {
	Since uint64 // xid8: 0 means everything
	Until uint64 // xid8 snapshot xmin of the window's first page
	After string // last farmer id of the previous page in this window
}

func (c downCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v1:%d:%d:%s", c.Since, c.Until, c.After)))
}

func parseCursor(s string) (downCursor, error) {
	var c downCursor
	if s == "" {
		return c, nil
	}
	bad := apperr.Fields("invalid cursor", apperr.FieldError{Field: "cursor", Message: "must be a cursor returned by this endpoint"})
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, bad
	}
	parts := strings.SplitN(string(raw), ":", 4)
	if len(parts) != 4 || parts[0] != "v1" {
		return c, bad
	}
	if c.Since, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return c, bad
	}
	if c.Until, err = strconv.ParseUint(parts[2], 10, 64); err != nil {
		return c, bad
	}
	if c.After = parts[3]; c.After != "" {
		if _, err := uuid.Parse(c.After); err != nil {
			return c, bad
		}
	}
	return c, nil
}

// windowStart is where the next sync-down window starts: the oldest
// transaction still in progress in this read's snapshot, or the snapshot's
// xmax when none is. A writer that commits after this read has an id at or
// above it, so nothing is ever skipped. Transaction ids are cluster-wide, so
// transactions positively seen running in another database are ignored:
// they cannot write these tables, and a long one (a dump, another tenant)
// would otherwise make every phone download everything again. So are
// transactions that declare they write nothing synced down
// (postgres.NotSyncedDown: the demand outlook's plan). An id that cannot
// be placed is kept, erring towards sending a farmer twice.
const windowStart = `
	WITH snap AS (SELECT pg_current_snapshot() AS s),
	     ours AS (
	         SELECT x FROM snap, pg_snapshot_xip(snap.s) AS x
	         WHERE NOT EXISTS (
	             SELECT 1 FROM pg_stat_activity a
	             WHERE (a.datname IS DISTINCT FROM current_database() OR a.application_name = '` + postgres.NotSyncedDown + `')
	               AND a.backend_xid IS NOT NULL
	               AND a.backend_xid::text::bigint = x::text::bigint % 4294967296))
	SELECT coalesce((SELECT min(x) FROM ours), (SELECT pg_snapshot_xmax(s) FROM snap))::text::bigint`

// farmers answers sync-down: the agent's farmers (with all their plots)
// whose data or assignment changed since the cursor. A farmer may be sent
// again; the phone upserts by id.
func (s *Service) farmers(c echo.Context) error {
	cur, err := parseCursor(c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	limit := 200
	if l := c.QueryParam("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 1000 {
			return apperr.Fields("invalid limit", apperr.FieldError{Field: "limit", Message: "must be an integer from 1 to 1000"})
		}
	}
	ctx := c.Request().Context()
	agent := auth.ClaimsOf(c).Subject
	page := FarmersPage{Farmers: []FarmerProfile{}, Refused: []RecordStatus{}}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if cur.Until == 0 {
			if err := tx.QueryRow(ctx, windowStart).Scan(&cur.Until); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
		if cur.After == "" && cur.Since > 0 {
			var err error
			if page.Erased, err = erasedSince(ctx, tx, agent, cur.Since); err != nil {
				return err
			}
		}
		if cur.After == "" {
			// Refusals recorded since the window opened, read in the
			// same snapshot as the cursor, so none is ever skipped.
			rows, err := tx.Query(ctx, `
				SELECT st.id, st.type, st.status, st.reason, st.received_at, st.updated_at
				FROM (`+phoneStatus+`
					WHERE r.agent_id = $1 AND r.id IN (
						SELECT f.record_id FROM mobile.refusals f WHERE $2 = 0 OR f.change_xid >= $2::text::xid8)) AS st
				WHERE st.status = 'refused'
				ORDER BY st.updated_at, st.id`, agent, cur.Since)
			if err != nil {
				return fmt.Errorf("list refusals: %w", err)
			}
			refused, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecordStatus, error) {
				var st RecordStatus
				return st, r.Scan(&st.ID, &st.Type, &st.Status, &st.Reason, &st.ReceivedAt, &st.UpdatedAt)
			})
			if err != nil {
				return fmt.Errorf("list refusals: %w", err)
			}
			page.Refused = append(page.Refused, refused...)
		}
		rows, err := tx.Query(ctx, `
			SELECT f.farmer_id::text, f.name, f.village, f.gender, f.birth_year, f.photo_hash, f.updated_at
			FROM mobile.assignments a
			JOIN ingest.farmer_profiles f ON f.farmer_id = a.farmer_id
			WHERE a.agent_id = $1
			  AND ($2 = '' OR a.farmer_id > $2::uuid)
			  AND ($3 = 0 OR a.assign_xid >= $3::text::xid8 OR f.change_xid >= $3::text::xid8
			       OR EXISTS (SELECT 1 FROM ingest.plot_profiles p WHERE p.farmer_id = f.farmer_id AND p.change_xid >= $3::text::xid8))
			ORDER BY a.farmer_id
			LIMIT $4`, agent, cur.After, cur.Since, limit+1)
		if err != nil {
			return fmt.Errorf("list farmers: %w", err)
		}
		index := map[string]int{}
		var ids []string
		for rows.Next() {
			var f FarmerProfile
			if err := rows.Scan(&f.FarmerID, &f.Name, &f.Village, &f.Gender, &f.BirthYear, &f.PhotoHash, &f.UpdatedAt); err != nil {
				return err
			}
			f.Plots = []PlotProfile{}
			index[f.FarmerID] = len(page.Farmers)
			page.Farmers = append(page.Farmers, f)
			ids = append(ids, f.FarmerID)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list farmers: %w", err)
		}
		if len(page.Farmers) > limit {
			page.Farmers, ids, page.More = page.Farmers[:limit], ids[:limit], true
		}
		rows, err = tx.Query(ctx, `
			SELECT plot_id::text, farmer_id::text, boundary, area_ha, declared_area_ha, tenure, updated_at
			FROM ingest.plot_profiles WHERE farmer_id = ANY($1::uuid[]) ORDER BY plot_id`, ids)
		if err != nil {
			return fmt.Errorf("list plots: %w", err)
		}
		for rows.Next() {
			var p PlotProfile
			var farmer string
			if err := rows.Scan(&p.PlotID, &farmer, &p.Boundary, &p.AreaHa, &p.DeclaredAreaHa, &p.Tenure, &p.UpdatedAt); err != nil {
				return err
			}
			if i, ok := index[farmer]; ok {
				page.Farmers[i].Plots = append(page.Farmers[i].Plots, p)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	next := downCursor{Since: cur.Until} // the window is done: next time, what changed since it opened
	if page.More {
		next = downCursor{Since: cur.Since, Until: cur.Until, After: page.Farmers[len(page.Farmers)-1].FarmerID}
	}
	page.Cursor = next.encode()
	return c.JSON(http.StatusOK, page)
}
