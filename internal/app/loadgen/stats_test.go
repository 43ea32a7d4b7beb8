package loadgen

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	t.Run("OK_NearestRank", func(t *testing.T) {
		var s []time.Duration
		for i := 100; i >= 1; i-- { // unsorted on purpose
			s = append(s, ms(i))
		}
		got := summarize(s)
		want := Latency{N: 100, P50: ms(50), P95: ms(95), P99: ms(99), Max: ms(100)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("summarize (-want +got):\n%s", diff)
		}
		if s[0] != ms(100) {
			t.Error("summarize reordered its input")
		}
	})
	t.Run("OK_FewSamplesNeverInterpolated", func(t *testing.T) {
		got := summarize([]time.Duration{ms(10), ms(30)})
		want := Latency{N: 2, P50: ms(10), P95: ms(30), P99: ms(30), Max: ms(30)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("summarize (-want +got):\n%s", diff)
		}
	})
	t.Run("OK_Empty", func(t *testing.T) {
		if got := summarize(nil); got != (Latency{}) {
			t.Errorf("summarize(nil) = %+v, want zero", got)
		}
	})
}

func TestReportErr(t *testing.T) {
	tests := []struct {
		name    string
		r       Report
		wantErr bool
	}{
		{"OK_AllStored", Report{Accepted: 10, Measured: true, IngestComplete: true, Stored: 10}, false},
		{"OK_NotMeasured", Report{Accepted: 10}, false},
		{"ErrFailedRequest", Report{Batches: 2, FailedBatches: 1}, true},
		{"ErrRejected", Report{Rejected: 1}, true},
		{"ErrRefused", Report{Measured: true, Refused: 1}, true},
		{"ErrNotAllStored", Report{Accepted: 10, Measured: true, Stored: 9}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.r.Err(); (err != nil) != tt.wantErr {
				t.Errorf("Err() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
