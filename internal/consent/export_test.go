package consent

import "time"

// SetNow makes s see now as the time (tests of expiries).
func SetNow(s *Service, now func() time.Time) { s.now = now }
