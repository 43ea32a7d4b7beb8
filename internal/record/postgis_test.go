package record

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

// TestCheckPolygonAgreesWithPostGIS asks PostGIS's ST_IsValid about
// thousands of small random boundaries, on a grid of 1/256° (exact in
// binary and in eight decimals, so both sides judge the same points).
// What Tani accepts PostGIS must find valid; for a single ring the two
// must agree exactly. With holes Tani may refuse more: it does not let
// rings touch at a point, which OGC allows.
func TestCheckPolygonAgreesWithPostGIS(t *testing.T) {
	db := pgtest.MustDB(t)
	r := rand.New(rand.NewPCG(3, 4))
	var polys []Polygon
	var wkts []string
	for i := range 6000 {
		p := randomPolygon(r, 3+i%14)
		for _, ring := range p.Coordinates { // from 1/16 to 1/256 of a degree
			for j := range ring {
				ring[j] = [2]float64{110 + (ring[j][0]-110)/16, -7 + (ring[j][1]+7)/16}
			}
		}
		polys, wkts = append(polys, p), append(wkts, p.WKT())
	}
	rows, err := db.Query(context.Background(), `SELECT ST_IsValid(ST_GeomFromText(w, 4326)) FROM unnest($1::text[]) WITH ORDINALITY AS u(w, i) ORDER BY i`, wkts)
	if err != nil {
		t.Fatal(err)
	}
	var postgis []bool
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			t.Fatal(err)
		}
		postgis = append(postgis, ok)
	}
	if err := rows.Err(); err != nil || len(postgis) != len(polys) {
		t.Fatalf("ST_IsValid answered %d of %d: %v", len(postgis), len(polys), err)
	}
	var agree, stricter, valid int
	for i, p := range polys {
		problems := checkPolygon(p, "boundary")
		ours := len(problems) == 0
		switch {
		case ours && !postgis[i]:
			t.Errorf("%s: accepted, but PostGIS finds it invalid", wkts[i])
		case !ours && postgis[i] && len(p.Coordinates) == 1:
			t.Errorf("%s: refused (%v), but PostGIS finds the single ring valid", wkts[i], problems)
		case ours != postgis[i]:
			if !strings.Contains(problems[0].Message, "crosses or touches ring") {
				t.Errorf("%s: refused (%v), but PostGIS finds it valid", wkts[i], problems)
			}
			stricter++
		default:
			agree++
		}
		if ours {
			valid++
		}
	}
	t.Logf("%d boundaries: %d judged alike (%d valid), %d refused that PostGIS accepts (rings touching at a point)", len(polys), agree, valid, stricter)
}
