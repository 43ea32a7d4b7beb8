package identity

import (
	"context"
	"net/http"
	"time"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/throttle"
)

// Throttle bounds password guessing at sign-in (see throttle.Policy): per
// account (the username as typed) and per client address, in
// identity.sign_in_failures, so that every process counts the same.
type Throttle = throttle.Policy

// DefaultThrottle is the throttle when the configuration gives none.
var DefaultThrottle = Throttle{AccountFree: 5, AddressFree: 20, Base: time.Second, Max: 15 * time.Minute, Forget: 24 * time.Hour}

// signIn authenticates a user of one of kinds, throttled: a locked
// account or address is refused (TooMany, with when to retry) before its
// password is looked at. A user of another kind of organization is
// refused like a wrong password, and counts as one.
func (d *Directory) signIn(ctx context.Context, username, password, address string, kinds ...Kind) (User, error) {
	attempt, err := d.guard.Begin(ctx, username, address)
	if err != nil {
		return User{}, err
	}
	u, err := d.Authenticate(ctx, username, password)
	if err == nil && !containsKind(kinds, u.OrganizationKind) {
		err = apperr.Errorf(apperr.Unauthorized, "wrong username or password")
	}
	if err != nil {
		return User{}, err
	}
	if err := d.guard.Succeeded(ctx, attempt); err != nil {
		return User{}, err
	}
	return u, nil
}

func containsKind(kinds []Kind, k Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// ClientAddress is the address sign-in attempts are counted under: the
// peer of the connection, or, behind a proxy the operator trusts
// (-identity.trusted-proxies), the client it names in X-Forwarded-For; an
// IPv6 client by its /64. Other modules that throttle their own sign-in
// (mobile-api's agent login) count under the same address.
func (d *Directory) ClientAddress(r *http.Request) string { return d.addresses.Of(r) }
