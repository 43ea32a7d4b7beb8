package vouchers

import (
	"errors"
	"fmt"
	"regexp"
)

// Refusal classes. A refusal's message starts with "vouchers: <class>: ",
// which is what clients read back from the endorsers' answers (see
// ParseRefusal) to tell a bad request from a conflict or a denial.
const (
	ClassInvalid   = "invalid"
	ClassNotFound  = "not_found"
	ClassConflict  = "conflict"
	ClassForbidden = "forbidden"
)

// Refusal is the contract refusing a transaction for a reason a client
// can act on.
type Refusal struct {
	Class   string
	Message string
}

func (r *Refusal) Error() string { return "vouchers: " + r.Class + ": " + r.Message }

func refuse(class, format string, args ...any) error {
	return &Refusal{Class: class, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error   { return refuse(ClassInvalid, format, args...) }
func notFound(format string, args ...any) error  { return refuse(ClassNotFound, format, args...) }
func conflict(format string, args ...any) error  { return refuse(ClassConflict, format, args...) }
func forbidden(format string, args ...any) error { return refuse(ClassForbidden, format, args...) }

var refusalRE = regexp.MustCompile(`vouchers: (invalid|not_found|conflict|forbidden): (.*)`)

// ParseRefusal finds a contract refusal in an error message as a peer or
// gateway reports it (the contract's message is embedded in theirs). It
// returns nil when the message holds none.
func ParseRefusal(msg string) *Refusal {
	m := refusalRE.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	return &Refusal{Class: m[1], Message: m[2]}
}

// IsRefusal reports whether err is a Refusal of class.
func IsRefusal(err error, class string) bool {
	var r *Refusal
	return errors.As(err, &r) && r.Class == class
}
