package identity

import (
	"github.com/labstack/echo/v4"
)

// Kind is what an organization is to Tani.
type Kind string

// The organization kinds.
const (
	Operator    Kind = "operator"    // runs the platform
	Field       Kind = "field"       // employs field agents
	Bank        Kind = "bank"        // lends, with farmers' consent
	Distributor Kind = "distributor" // sells inputs, with farmers' consent
)

// Valid reports whether k is one of the kinds.
func (k Kind) Valid() bool {
	switch k {
	case Operator, Field, Bank, Distributor:
		return true
	}
	return false
}

// Principal is an authenticated caller from outside the field: an
// organization and the credential it used. Exactly one of APIKeyID and
// UserID is set.
type Principal struct {
	OrganizationID string
	Kind           Kind
	APIKeyID       string
	UserID         string
	// Role is a user's role (admin, staff for banks and distributors;
	// operator, reviewer for operators); empty for API keys.
	Role string
	// Username is a user's sign-in name, for audit trails that name a
	// person (a review decision); empty for API keys.
	Username string
	// Scopes bound what an API key may read (empty for users, whose reads
	// are bounded by consent alone).
	Scopes []string
}

// Credential names the key or user for logs and the access log:
// "key:<id>" or "user:<id>".
func (p Principal) Credential() string {
	if p.APIKeyID != "" {
		return "key:" + p.APIKeyID
	}
	return "user:" + p.UserID
}

const principalKey = "identity.principal"

// PrincipalOf returns the caller that Require authenticated. ok is false on
// a route that Require does not guard.
func PrincipalOf(c echo.Context) (p Principal, ok bool) {
	p, ok = c.Get(principalKey).(Principal)
	return p, ok
}

// WithPrincipal records the authenticated caller on the request.
func WithPrincipal(c echo.Context, p Principal) { c.Set(principalKey, p) }
