// Package polltest waits in tests for what happens asynchronously (a
// consumer stored a record, a stream holds a message) by polling a
// condition until it holds or a deadline passes. Tests never sleep to
// synchronise: a sleep is either too short on a loaded machine (flaky) or
// longer than needed. It must never be imported by non-test code.
package polltest

import (
	"errors"
	"testing"
	"time"
)

// maxInterval bounds the pause between two checks, so that a condition
// that holds is seen quickly.
const maxInterval = 50 * time.Millisecond

// Eventually calls cond until it returns nil, and fails the test (Fatal)
// if it has not by timeout, with cond's last error: that error should say
// what was seen ("got 2 rows, want 3"). cond runs on the test's goroutine,
// so it may itself call tb.Fatal for what must not happen at all.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	if err := Wait(timeout, cond); err != nil {
		tb.Fatalf("not within %s: %v", timeout, err)
	}
}

// Wait calls cond until it returns nil and returns nil then, or cond's
// last error once timeout has passed: for a test that asserts something
// of its own when the wait ends either way.
func Wait(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(min(interval, time.Until(deadline)))
		interval = min(2*interval, maxInterval)
	}
}

// errNotYet is what Until reports when its condition never held.
var errNotYet = errors.New("condition never held")

// Until adapts a boolean condition to Eventually.
func Until(ok func() bool) func() error {
	return func() error {
		if ok() {
			return nil
		}
		return errNotYet
	}
}
