package ledger

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := &progressBar{w: &buf, start: time.Now()}
	p.update(250, 1000)
	if got := buf.String(); !strings.HasPrefix(got, "\rverify [==========>") || !strings.Contains(got, " 25% 250/1000") {
		t.Errorf("got %q, want a quarter-full bar at 25%%", got)
	}
	buf.Reset()
	p.update(260, 1000) // within 100 ms of the last draw: skipped
	if buf.Len() != 0 {
		t.Errorf("got %q, want no redraw within 100 ms", buf.String())
	}
	p.update(1000, 1000) // completion always draws
	if got := buf.String(); !strings.Contains(got, "100% 1000/1000") {
		t.Errorf("got %q, want the full bar", got)
	}
}
