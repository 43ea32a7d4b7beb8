package record

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/tani-platform/tani/internal/apperr"
)

// Limits of a plot boundary. A GPS walk logs about one position a second,
// so 5,000 positions is over an hour of walking around one ring; phones
// should thin longer walks (Douglas–Peucker at GPS accuracy) before
// sending. A smallholder plot is a few hectares: 10,000 ha and 1° (about
// 110 km) are far beyond any plot, and within them the plane geometry
// below and PostGIS's spherical geography agree on what is valid.
const (
	MaxRings            = 20
	MaxRingPositions    = 5000
	MaxPolygonPositions = 10000
	MaxPlotSpanDegrees  = 1.0
	MaxPlotAreaHa       = 10000.0
)

// gridPerDegree is the grid boundaries are stored on: Polygon.WKT writes
// eight decimals, so PostGIS sees every coordinate rounded to 1e-8°
// (about 1 mm). Validity is decided exactly on that grid, in integers, so
// what is checked is what is stored.
const gridPerDegree = 1e8

// metresPerDegree is the length of one degree of latitude (and of
// longitude at the equator), for the area cap.
const metresPerDegree = 111_319.49

// gpt is a point on the storage grid, relative to the boundary's
// south-west corner: with a span of at most 1° every coordinate is below
// 1e8+2, so every orientation product fits in an int64.
type gpt struct{ x, y int64 }

func less(p, q gpt) bool { return p.x < q.x || (p.x == q.x && p.y < q.y) }

// orient is twice the signed area of the triangle a, b, c: positive if c
// lies left of a→b, zero if the three are collinear. Exact.
func orient(a, b, c gpt) int64 {
	return (b.x-a.x)*(c.y-a.y) - (b.y-a.y)*(c.x-a.x)
}

func onSegment(a, b, p gpt) bool {
	return min(a.x, b.x) <= p.x && p.x <= max(a.x, b.x) && min(a.y, b.y) <= p.y && p.y <= max(a.y, b.y)
}

// touch reports whether the closed segments ab and cd share any point.
func touch(a, b, c, d gpt) bool {
	d1, d2, d3, d4 := orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && onSegment(c, d, a)) || (d2 == 0 && onSegment(c, d, b)) ||
		(d3 == 0 && onSegment(a, b, c)) || (d4 == 0 && onSegment(a, b, d))
}

// edge is one edge of a ring, its ends in sweep order (a before b).
type edge struct {
	a, b gpt
	ring int
	idx  int // index of the edge in its ring
	n    int // edges in the ring
	pos  int // index of the position the edge starts at, for messages
	node *tnode
}

// consecutive edges of a ring share a vertex; that is the only contact
// rings may have.
func consecutive(e, f *edge) bool {
	return e.ring == f.ring && ((e.idx+1)%e.n == f.idx || (f.idx+1)%f.n == e.idx)
}

func conflict(e, f *edge) bool { return !consecutive(e, f) && touch(e.a, e.b, f.a, f.b) }

// gridRings is a boundary on the storage grid: each ring's vertices
// without the closing repeat and without consecutive repeats, and the
// index of the position each vertex came from.
type gridRings struct {
	rings [][]gpt
	pos   [][]int
}

// edges returns every edge of every ring.
func (g *gridRings) edges() []*edge {
	var out []*edge
	for r, ring := range g.rings {
		for i := range ring {
			a, b := ring[i], ring[(i+1)%len(ring)]
			if less(b, a) {
				a, b = b, a
			}
			out = append(out, &edge{a: a, b: b, ring: r, idx: i, n: len(ring), pos: g.pos[r][i]})
		}
	}
	return out
}

// checkPolygon reports what keeps a boundary from being stored as a valid
// polygon (OGC simple-features rules, as PostGIS's ST_IsValid applies
// them) or from being a plausible plot. field names the boundary.
//
// It is stricter than OGC in one way: rings may not touch each other at
// all (OGC lets a hole touch the outer ring or another hole at one point).
func checkPolygon(p Polygon, field string) []apperr.FieldError {
	return checkPolygonWith(p, field, findContact)
}

// checkPolygonWith is checkPolygon with the given search for touching
// edges (findContact, or findContactSlowly in tests).
func checkPolygonWith(p Polygon, field string, contact func([]*edge) (*edge, *edge)) []apperr.FieldError {
	var out []apperr.FieldError
	add := func(f, format string, args ...any) {
		out = append(out, apperr.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	ringField := func(r int) string { return fmt.Sprintf("%s.coordinates[%d]", field, r) }
	if p.Type != "Polygon" {
		add(field+".type", "must be Polygon")
	}
	switch n := len(p.Coordinates); {
	case n == 0:
		add(field+".coordinates", "must have at least 1 ring")
	case n > MaxRings:
		add(field+".coordinates", "has %d rings; a boundary may have at most %d", n, MaxRings)
	}
	total := 0
	for r, ring := range p.Coordinates {
		switch {
		case len(ring) < 4:
			add(ringField(r), "needs at least 4 positions (3 corners and the first again to close it)")
		case len(ring) > MaxRingPositions:
			add(ringField(r), "has %d positions; a ring may have at most %d (thin the walk)", len(ring), MaxRingPositions)
		}
		total += len(ring)
	}
	if total > MaxPolygonPositions {
		add(field+".coordinates", "has %d positions; a boundary may have at most %d", total, MaxPolygonPositions)
	}
	if len(out) > 0 {
		return out
	}

	minLon, minLat, maxLon, maxLat := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for r, ring := range p.Coordinates {
		for i, pos := range ring {
			lon, lat := pos[0], pos[1]
			if !(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90) { // NaN fails too
				add(fmt.Sprintf("%s[%d]", ringField(r), i), "[longitude, latitude] out of range")
				break
			}
			minLon, maxLon = min(minLon, lon), max(maxLon, lon)
			minLat, maxLat = min(minLat, lat), max(maxLat, lat)
		}
		if ring[0] != ring[len(ring)-1] {
			add(ringField(r), "ring is open (the last position must equal the first)")
		}
	}
	if len(out) > 0 {
		return out
	}
	if maxLon-minLon > MaxPlotSpanDegrees || maxLat-minLat > MaxPlotSpanDegrees {
		add(field+".coordinates", "spans %.4g° of longitude and %.4g° of latitude; a plot must fit within %g° × %g°",
			maxLon-minLon, maxLat-minLat, MaxPlotSpanDegrees, MaxPlotSpanDegrees)
		return out
	}

	g := snapRings(p, minLon, minLat)
	for r, ring := range g.rings {
		if len(ring) < 3 {
			add(ringField(r), "ring needs at least 3 distinct positions")
			continue
		}
		if collinear(ring) {
			add(ringField(r), "ring encloses no area (its positions lie on one line)")
			continue
		}
		for i, v := range ring {
			u, w := ring[(i+len(ring)-1)%len(ring)], ring[(i+1)%len(ring)]
			if orient(u, v, w) == 0 && (u.x-v.x)*(w.x-v.x)+(u.y-v.y)*(w.y-v.y) > 0 {
				add(fmt.Sprintf("%s[%d]", ringField(r), g.pos[r][i]), "ring turns back on itself here (its edges overlap)")
				break
			}
		}
	}
	if len(out) > 0 {
		return out
	}

	if e, f := contact(g.edges()); e != nil {
		if e.ring > f.ring || (e.ring == f.ring && e.pos > f.pos) {
			e, f = f, e
		}
		if e.ring == f.ring {
			add(ringField(e.ring), "edges %d and %d cross or touch (self-intersecting ring)", e.pos, f.pos)
		} else {
			add(ringField(f.ring), "crosses or touches ring %d; a hole must lie inside the outer ring without touching it or another hole", e.ring)
		}
		return out
	}
	for h := 1; h < len(g.rings); h++ {
		if !inside(g.rings[h][0], g.rings[0]) {
			add(ringField(h), "hole lies outside the outer ring")
			continue
		}
		for o := 1; o < len(g.rings); o++ {
			if o != h && inside(g.rings[h][0], g.rings[o]) {
				add(ringField(h), "hole lies inside the hole coordinates[%d]; holes must not nest", o)
				break
			}
		}
	}
	if len(out) > 0 {
		return out
	}

	area := math.Abs(ringArea(p.Coordinates[0]))
	for _, hole := range p.Coordinates[1:] {
		area -= math.Abs(ringArea(hole))
	}
	ha := area * metresPerDegree * metresPerDegree * math.Cos((minLat+maxLat)/2*math.Pi/180) / 10_000
	if ha > MaxPlotAreaHa {
		add(field, "encloses about %.0f ha; a plot may be at most %g ha", ha, MaxPlotAreaHa)
	}
	return out
}

// snapRings puts the rings on the storage grid, relative to the
// south-west corner, dropping the closing position and repeats.
func snapRings(p Polygon, minLon, minLat float64) *gridRings {
	var buf []byte
	snap := func(f float64) int64 {
		buf = strconv.AppendFloat(buf[:0], f, 'f', 8, 64) // as Polygon.WKT writes it
		var n int64
		for _, c := range buf {
			if c >= '0' && c <= '9' {
				n = n*10 + int64(c-'0')
			}
		}
		if buf[0] == '-' {
			n = -n
		}
		return n
	}
	x0, y0 := snap(minLon), snap(minLat)
	g := &gridRings{rings: make([][]gpt, len(p.Coordinates)), pos: make([][]int, len(p.Coordinates))}
	for r, ring := range p.Coordinates {
		var pts []gpt
		var pos []int
		for i, c := range ring[:len(ring)-1] {
			q := gpt{snap(c[0]) - x0, snap(c[1]) - y0}
			if len(pts) > 0 && pts[len(pts)-1] == q {
				continue
			}
			pts, pos = append(pts, q), append(pos, i)
		}
		for len(pts) > 1 && pts[len(pts)-1] == pts[0] {
			pts, pos = pts[:len(pts)-1], pos[:len(pos)-1]
		}
		g.rings[r], g.pos[r] = pts, pos
	}
	return g
}

func collinear(ring []gpt) bool {
	for _, v := range ring[2:] {
		if orient(ring[0], ring[1], v) != 0 {
			return false
		}
	}
	return true
}

// inside reports whether q lies inside ring, q being on no edge of it.
func inside(q gpt, ring []gpt) bool {
	in := false
	for i, a := range ring {
		b := ring[(i+1)%len(ring)]
		if (a.y > q.y) != (b.y > q.y) && (b.y > a.y) == (orient(a, b, q) > 0) {
			in = !in
		}
	}
	return in
}

// ringArea is the ring's signed area in square degrees (shoelace formula).
func ringArea(ring [][2]float64) float64 {
	var s float64
	for i := 0; i+1 < len(ring); i++ {
		s += (ring[i][0]-ring[0][0])*(ring[i+1][1]-ring[0][1]) - (ring[i+1][0]-ring[0][0])*(ring[i][1]-ring[0][1])
	}
	return s / 2
}

// findContact returns two edges that touch although they are not
// consecutive edges of one ring, or nils. It is a Shamos–Hoey sweep,
// O(n log n) for n edges: events at the edges' ends in (x, y) order, and
// the edges the sweep line crosses kept in bottom-to-top order in a
// treap. Any two edges that become neighbours in that order are tested,
// which finds the leftmost contact if there is one; contacts at an event
// point are found by collecting every edge through it. Consecutive
// edges that overlap must have been refused before (checkPolygon's
// "turns back" rule): then they share their common vertex and nothing else.
func findContact(edges []*edge) (*edge, *edge) {
	type event struct {
		p    gpt
		e    *edge
		left bool
	}
	events := make([]event, 0, 2*len(edges))
	for _, e := range edges {
		events = append(events, event{e.a, e, true}, event{e.b, e, false})
	}
	slices.SortFunc(events, func(s, t event) int { return cmp.Or(cmp.Compare(s.p.x, t.p.x), cmp.Compare(s.p.y, t.p.y)) })
	var t treap
	var starting, through []*edge
	for i := 0; i < len(events); {
		q := events[i].p
		starting = starting[:0]
		for ; i < len(events) && events[i].p == q; i++ {
			if events[i].left {
				starting = append(starting, events[i].e)
			}
		}
		// Every edge in the sweep through q, ending there or passing.
		through = through[:0]
		on, below, above := t.locate(q)
		if on != nil {
			// Edges through q are neighbours. Three already make a
			// contact, so no more than four are collected.
			lo := on
			for range 3 {
				n := lo.prev()
				if n == nil || orient(n.e.a, n.e.b, q) != 0 {
					break
				}
				lo = n
			}
			hi := lo
			for n := lo; n != nil && orient(n.e.a, n.e.b, q) == 0 && len(through) < 4; n = n.next() {
				through, hi = append(through, n.e), n
			}
			below, above = lo.prev(), hi.next()
		}
		// At most two edges, consecutive, may meet at a point.
		at := append(through, starting...)
		for j := range min(len(at), 4) {
			for k := j + 1; k < min(len(at), 4); k++ {
				if !consecutive(at[j], at[k]) {
					return at[j], at[k]
				}
			}
		}
		for _, e := range through {
			t.remove(e.node)
		}
		if len(starting) == 2 && orient(q, starting[0].b, starting[1].b) < 0 {
			starting[0], starting[1] = starting[1], starting[0] // bottom first
		}
		after := below
		for _, e := range starting {
			e.node = &tnode{e: e, prio: rand.Uint32()}
			t.insertAfter(after, e.node)
			after = e.node
		}
		lowest, highest := below, above
		if len(starting) > 0 {
			lowest, highest = starting[0].node, starting[len(starting)-1].node
			if below != nil && conflict(below.e, lowest.e) {
				return below.e, lowest.e
			}
			if above != nil && conflict(highest.e, above.e) {
				return highest.e, above.e
			}
		} else if below != nil && above != nil && conflict(below.e, above.e) {
			return below.e, above.e
		}
	}
	return nil, nil
}

// findContactSlowly is findContact by testing every pair: the reference
// the sweep is tested against.
func findContactSlowly(edges []*edge) (*edge, *edge) {
	for i, e := range edges {
		for _, f := range edges[i+1:] {
			if conflict(e, f) {
				return e, f
			}
		}
	}
	return nil, nil
}

// tnode is a node of the sweep's treap: a binary tree in bottom-to-top
// order of its edges, a heap in prio.
type tnode struct {
	e                   *edge
	prio                uint32
	left, right, parent *tnode
}

type treap struct{ root *tnode }

// locate finds where q is among the edges: an edge through q, or the
// edges just below and above it.
func (t *treap) locate(q gpt) (on, below, above *tnode) {
	for n := t.root; n != nil; {
		switch o := orient(n.e.a, n.e.b, q); {
		case o == 0:
			return n, nil, nil
		case o > 0: // q is above the edge
			below, n = n, n.right
		default:
			above, n = n, n.left
		}
	}
	return nil, below, above
}

func (n *tnode) next() *tnode {
	if n.right != nil {
		n = n.right
		for n.left != nil {
			n = n.left
		}
		return n
	}
	for n.parent != nil && n.parent.right == n {
		n = n.parent
	}
	return n.parent
}

func (n *tnode) prev() *tnode {
	if n.left != nil {
		n = n.left
		for n.right != nil {
			n = n.right
		}
		return n
	}
	for n.parent != nil && n.parent.left == n {
		n = n.parent
	}
	return n.parent
}

// insertAfter puts n right after pred in order (first if pred is nil).
func (t *treap) insertAfter(pred, n *tnode) {
	switch {
	case t.root == nil:
		t.root = n
		return
	case pred == nil:
		m := t.root
		for m.left != nil {
			m = m.left
		}
		m.left, n.parent = n, m
	case pred.right == nil:
		pred.right, n.parent = n, pred
	default:
		m := pred.right
		for m.left != nil {
			m = m.left
		}
		m.left, n.parent = n, m
	}
	for n.parent != nil && n.prio < n.parent.prio {
		t.rotateUp(n)
	}
}

func (t *treap) remove(n *tnode) {
	for n.left != nil && n.right != nil {
		if n.left.prio < n.right.prio {
			t.rotateUp(n.left)
		} else {
			t.rotateUp(n.right)
		}
	}
	child := n.left
	if child == nil {
		child = n.right
	}
	if child != nil {
		child.parent = n.parent
	}
	t.replace(n, child)
	n.left, n.right, n.parent = nil, nil, nil
}

// replace puts m where n hangs from n's parent.
func (t *treap) replace(n, m *tnode) {
	switch p := n.parent; {
	case p == nil:
		t.root = m
	case p.left == n:
		p.left = m
	default:
		p.right = m
	}
}

// rotateUp lifts x above its parent, keeping the order.
func (t *treap) rotateUp(x *tnode) {
	p := x.parent
	t.replace(p, x)
	x.parent = p.parent
	if p.left == x {
		p.left = x.right
		if x.right != nil {
			x.right.parent = p
		}
		x.right = p
	} else {
		p.right = x.left
		if x.left != nil {
			x.left.parent = p
		}
		x.left = p
	}
	p.parent = x
}
