// Package identity says who is calling Tani from outside the field: the
// organizations (operator, field organization, bank, distributor), the API
// keys of banks and distributors, and the people of organizations — portal
// users (admin, staff) and named operators (operator, reviewer) — with
// their sessions (a cookie with a CSRF token, or an operator's bearer
// token). Every service authenticates banks, distributors and operators
// through it (Require, RequireSession, RequireOperator), so that "which
// organization, which person is this" has one answer.
//
// It stores no secret in clear (API key secrets and session ids as
// SHA-256, passwords as bcrypt) and never decides what a caller may read
// about a farmer: that is the consent gate's job (internal/consent), which
// takes the Principal this package establishes.
package identity
