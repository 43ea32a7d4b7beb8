package consent

import "time"

// SetNow makes s see now as the time (tests of expiries).
func SetNow(s *Service, now func() time.Time) { s.now = now }

// ForgetFullSweep makes s's next sweep a full one, as a process's first.
func ForgetFullSweep(s *Service) {
	s.sweepMu.Lock()
	s.lastFull = time.Time{}
	s.sweepMu.Unlock()
}
