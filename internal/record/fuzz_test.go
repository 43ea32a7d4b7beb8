package record

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/gowebpki/jcs"
)

// FuzzCanonical: whatever the strict parser accepts, gowebpki/jcs (an
// independent RFC 8785 implementation) accepts too and canonicalizes to
// the same bytes; those bytes are valid JSON and read back to themselves.
func FuzzCanonical(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, perr := parseObject(data)
		if perr != nil {
			return
		}
		c := appendCanonical(nil, &v)
		want, err := jcs.Transform(data)
		if err != nil {
			t.Fatalf("accepted %q, which gowebpki/jcs refuses: %v", data, err)
		}
		if string(c) != string(want) {
			t.Fatalf("canonical form of %q:\n got %s\nwant %s", data, c, want)
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form %s is not valid JSON", c)
		}
		v2, perr := parseObject(c)
		if perr != nil {
			t.Fatalf("canonical form %s does not parse: %v", c, perr)
		}
		if again := appendCanonical(nil, &v2); string(again) != string(c) {
			t.Fatalf("canonical form is not a fixed point:\n%s\n%s", c, again)
		}
	})
}

// FuzzPolygon: checking a boundary never panics, and the sweep finds a
// contact exactly when testing every pair of edges does. The first byte
// chooses the form: positions on a small grid, where degenerate cases
// abound, or raw float64 bits (NaN, infinities, out of range).
func FuzzPolygon(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p := polygonFrom(data)
		fast := checkPolygonWith(p, "boundary", findContact)
		slow := checkPolygonWith(p, "boundary", findContactSlowly)
		if (len(fast) == 0) != (len(slow) == 0) {
			t.Fatalf("%v: sweep says %v, pairwise test says %v", p.Coordinates, fast, slow)
		}
	})
}

// polygonFrom turns fuzz bytes into a boundary: a mode byte, then per ring
// a count byte and the positions; rings are closed unless the count byte's
// top bit is set.
func polygonFrom(data []byte) Polygon {
	p := Polygon{Type: "Polygon"}
	if len(data) == 0 {
		return p
	}
	raw := data[0]&1 == 1
	data = data[1:]
	for len(data) > 0 && len(p.Coordinates) < 4 {
		n, open := int(data[0]&15), data[0]&128 != 0
		data = data[1:]
		var ring [][2]float64
		for range n {
			var pos [2]float64
			if raw {
				if len(data) < 16 {
					break
				}
				pos = [2]float64{math.Float64frombits(binary.LittleEndian.Uint64(data)), math.Float64frombits(binary.LittleEndian.Uint64(data[8:]))}
				data = data[16:]
			} else {
				if len(data) < 1 {
					break
				}
				pos = [2]float64{110 + float64(data[0]&15)/256, -7 + float64(data[0]>>4)/256}
				data = data[1:]
			}
			ring = append(ring, pos)
		}
		if len(ring) > 0 && !open {
			ring = append(ring, ring[0])
		}
		p.Coordinates = append(p.Coordinates, ring)
	}
	return p
}
