package polltest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/polltest"
)

func TestWait(t *testing.T) {
	t.Run("OK_HoldsAfterSomeCalls", func(t *testing.T) {
		calls := 0
		err := polltest.Wait(10*time.Second, func() error {
			if calls++; calls < 5 {
				return fmt.Errorf("call %d", calls)
			}
			return nil
		})
		if err != nil || calls != 5 {
			t.Errorf("got %v after %d calls, want nil after 5", err, calls)
		}
	})
	t.Run("ErrTimeout_ReturnsTheLastError", func(t *testing.T) {
		calls := 0
		err := polltest.Wait(20*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("call %d", calls)
		})
		if want := fmt.Sprintf("call %d", calls); err == nil || err.Error() != want || calls < 2 {
			t.Errorf("got %v after %d calls, want %q from more than one call", err, calls, want)
		}
	})
	t.Run("ErrTimeout_UntilNamesIt", func(t *testing.T) {
		if err := polltest.Wait(time.Millisecond, polltest.Until(func() bool { return false })); err == nil {
			t.Error("got nil, want an error")
		}
	})
}

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	t.Run("ErrTimeout_FailsWithTheLastError", func(t *testing.T) {
		tb := &fakeTB{TB: t}
		polltest.Eventually(tb, 10*time.Millisecond, func() error { return errors.New("got 2 rows, want 3") })
		if want := "not within 10ms: got 2 rows, want 3"; tb.failed != want {
			t.Errorf("got failure %q, want %q", tb.failed, want)
		}
	})
	t.Run("OK_NoFailure", func(t *testing.T) {
		tb := &fakeTB{TB: t}
		polltest.Eventually(tb, 10*time.Second, func() error { return nil })
		if tb.failed != "" {
			t.Errorf("got failure %q, want none", tb.failed)
		}
	})
}
