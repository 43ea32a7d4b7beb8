package record

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ring makes a closed ring from corners given in units of 0.001° from
// (110.4, -7.25).
func ring(corners ...[2]float64) [][2]float64 {
	var out [][2]float64
	for _, c := range corners {
		out = append(out, [2]float64{110.4 + c[0]/1000, -7.25 + c[1]/1000})
	}
	return append(out, out[0])
}

func poly(rings ...[][2]float64) Polygon { return Polygon{Type: "Polygon", Coordinates: rings} }

func problemsText(p Polygon) string {
	var b strings.Builder
	for _, f := range checkPolygon(p, "boundary") {
		b.WriteString(f.Field + ": " + f.Message + "\n")
	}
	return b.String()
}

func TestCheckPolygon(t *testing.T) {
	square := ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{0, 10})
	hole := ring([2]float64{2, 2}, [2]float64{2, 4}, [2]float64{4, 4}, [2]float64{4, 2})
	hole2 := ring([2]float64{6, 6}, [2]float64{6, 8}, [2]float64{8, 8}, [2]float64{8, 6})
	bigHole := ring([2]float64{1, 1}, [2]float64{1, 9}, [2]float64{9, 9}, [2]float64{9, 1})
	valid := map[string]Polygon{
		"Square":          poly(square),
		"SquareWithHole":  poly(square, hole),
		"TwoHoles":        poly(square, hole, hole2),
		"LShape":          poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{10, 5}, [2]float64{5, 5}, [2]float64{5, 10}, [2]float64{0, 10})),
		"StandingStill":   poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{0, 10}, [2]float64{0, 10})),
		"CollinearCorner": poly(ring([2]float64{0, 0}, [2]float64{5, 0}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{0, 10})),
		"Triangle":        poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{0, 10})),
		"VerticalEdges":   poly(ring([2]float64{0, 0}, [2]float64{0, 10}, [2]float64{3, 10}, [2]float64{3, 2}, [2]float64{6, 2}, [2]float64{6, 10}, [2]float64{9, 10}, [2]float64{9, 0})),
	}
	for name, p := range valid {
		t.Run("OK_"+name, func(t *testing.T) {
			if got := problemsText(p); got != "" {
				t.Errorf("valid boundary refused:\n%s", got)
			}
		})
	}
	global := [][2]float64{{-179, -89}, {179, -89}, {179, 89}, {-179, 89}, {-179, -89}}
	large := [][2]float64{{10, 0}, {10.99, 0}, {10.99, 0.99}, {10, 0.99}, {10, 0}}
	many := ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{10, 10})
	for len(many) <= MaxRingPositions {
		many = append(many[:1], many...)
	}
	tests := []struct {
		name string
		p    Polygon
		want string
	}{
		{"ErrBowtie", poly(ring([2]float64{0, 0}, [2]float64{10, 10}, [2]float64{10, 0}, [2]float64{0, 10})), "coordinates[0]: edges 0 and 2 cross or touch (self-intersecting ring)"},
		{"ErrPinched", poly(ring([2]float64{0, 0}, [2]float64{5, 5}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{5, 5}, [2]float64{0, 10})), "cross or touch (self-intersecting ring)"},
		{"ErrVertexOnEdge", poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{5, 0}, [2]float64{0, 10})), "cross or touch (self-intersecting ring)"},
		{"ErrSpike", poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{15, 0}, [2]float64{10, 0}, [2]float64{10, 10}, [2]float64{0, 10})), "ring turns back on itself"},
		{"ErrZeroArea", poly(ring([2]float64{0, 0}, [2]float64{5, 0}, [2]float64{10, 0})), "coordinates[0]: ring encloses no area"},
		{"ErrTwoDistinct", poly(ring([2]float64{0, 0}, [2]float64{0, 0}, [2]float64{10, 0})), "ring needs at least 3 distinct positions"},
		{"ErrBackAndForth", poly(ring([2]float64{0, 0}, [2]float64{10, 0}, [2]float64{0, 0}, [2]float64{10, 0})), "ring encloses no area"},
		{"ErrHoleCrossesShell", poly(square, ring([2]float64{5, 5}, [2]float64{15, 5}, [2]float64{15, 6}, [2]float64{5, 6})), "coordinates[1]: crosses or touches ring 0"},
		{"ErrHoleOutside", poly(square, ring([2]float64{20, 20}, [2]float64{20, 24}, [2]float64{24, 24}, [2]float64{24, 20})), "coordinates[1]: hole lies outside the outer ring"},
		{"ErrHoleEqualsShell", poly(square, square), "coordinates[1]: crosses or touches ring 0"},
		{"ErrHoleTouchesShell", poly(square, ring([2]float64{0, 0}, [2]float64{2, 4}, [2]float64{4, 2})), "coordinates[1]: crosses or touches ring 0"},
		{"ErrNestedHoles", poly(square, bigHole, hole), "coordinates[2]: hole lies inside the hole coordinates[1]"},
		{"ErrHolesCross", poly(square, hole, ring([2]float64{3, 3}, [2]float64{3, 5}, [2]float64{5, 5}, [2]float64{5, 3})), "coordinates[2]: crosses or touches ring 1"},
		{"ErrNearGlobal", poly(global), "spans 358° of longitude and 178° of latitude"},
		{"ErrTooLarge", poly(large), "boundary: encloses about 1214"},
		{"ErrOpen", poly([][2]float64{{110, -7}, {110.001, -7}, {110.001, -7.001}, {110, -7.001}, {110, -7.0005}}), "ring is open"},
		{"ErrOutOfRange", poly([][2]float64{{190, -7}, {110.001, -7}, {110.001, -7.001}, {190, -7}}), "coordinates[0][0]: [longitude, latitude] out of range"},
		{"ErrTooFewPositions", poly([][2]float64{{110, -7}, {110.001, -7}, {110, -7}}), "needs at least 4 positions"},
		{"ErrTooManyInRing", poly(many), fmt.Sprintf("has %d positions; a ring may have at most 5000", len(many))},
		{"ErrTooManyInAll", poly(many[:4000], many[:4000], many[:4000]), "has 12000 positions; a boundary may have at most 10000"},
		{"ErrNoRings", poly(), "coordinates: must have at least 1 ring"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := problemsText(tt.p); !strings.Contains(got, tt.want) {
				t.Errorf("problems =\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}

// randomPolygon draws up to three rings of a few corners on a small grid,
// where collinear edges, shared vertices and crossings are common. Half
// are star-shaped around a centre (corners in angle order), so that many
// are valid and holes often sit inside the outer ring.
func randomPolygon(r *rand.Rand, grid int) Polygon {
	rings := make([][][2]float64, 1+r.IntN(3))
	star := r.IntN(2) == 0
	for i := range rings {
		n := 3 + r.IntN(6)
		var pts [][2]float64
		for range n {
			pts = append(pts, [2]float64{float64(r.IntN(grid)), float64(r.IntN(grid))})
		}
		if star {
			c := float64(grid-1) / 2
			slices.SortFunc(pts, func(a, b [2]float64) int {
				return cmp.Compare(math.Atan2(a[1]-c, a[0]-c), math.Atan2(b[1]-c, b[0]-c))
			})
			if i > 0 { // holes: shrunk towards the centre
				for j := range pts {
					pts[j] = [2]float64{math.Round(c + (pts[j][0]-c)/4), math.Round(c + (pts[j][1]-c)/4)}
				}
			}
		}
		for _, q := range pts {
			rings[i] = append(rings[i], [2]float64{110 + q[0]/16, -7 + q[1]/16})
		}
		rings[i] = append(rings[i], rings[i][0])
	}
	return Polygon{Type: "Polygon", Coordinates: rings}
}

// TestFindContactAgreesWithSlowReference runs the sweep and the pairwise
// test on many small, degenerate boundaries.
func TestFindContactAgreesWithSlowReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	valid := 0
	for i := range 20000 {
		p := randomPolygon(r, 3+i%14)
		fast, slow := checkPolygonWith(p, "b", findContact), checkPolygonWith(p, "b", findContactSlowly)
		if (len(fast) == 0) != (len(slow) == 0) {
			t.Fatalf("%v: sweep says %v, pairwise test says %v", p.Coordinates, fast, slow)
		}
		if len(fast) == 0 {
			valid++
		}
	}
	t.Logf("%d of 20000 small random boundaries valid", valid)
	if valid < 500 {
		t.Errorf("only %d of 20000 random boundaries valid: the test exercises too little", valid)
	}
	// Larger star-shaped rings (valid unless radii line up badly) and
	// random walks (nearly always crossing), a few hundred corners each.
	valid = 0
	for i := range 400 {
		n := 10 + r.IntN(300)
		var pts [][2]float64
		for k := range n {
			a, rad := 2*math.Pi*float64(k)/float64(n), float64(100+r.IntN(400))
			if i%2 == 1 {
				a, rad = r.Float64()*2*math.Pi, float64(r.IntN(500))
			}
			pts = append(pts, [2]float64{110 + math.Round(rad*math.Cos(a))/1e4, -7 + math.Round(rad*math.Sin(a))/1e4})
		}
		p := Polygon{Type: "Polygon", Coordinates: [][][2]float64{append(pts, pts[0])}}
		fast, slow := checkPolygonWith(p, "b", findContact), checkPolygonWith(p, "b", findContactSlowly)
		if (len(fast) == 0) != (len(slow) == 0) {
			t.Fatalf("%v: sweep says %v, pairwise test says %v", p.Coordinates, fast, slow)
		}
		if len(fast) == 0 {
			valid++
		}
	}
	t.Logf("%d of 400 larger random boundaries valid", valid)
}
