package httpserver

import "github.com/labstack/echo/v4"

// Router is what a service mounts its HTTP routes on: one group per
// audience, so that a reader sees at the call who may reach what. The
// composition root builds it for each service; a group the service has no
// routes for may be nil.
type Router struct {
	// Public is the service's own path prefix (/mobile/v1 for mobile-api):
	// reached by its own clients, whom the service authenticates itself.
	Public *echo.Group
	// Admin is /admin/v1, already guarded by the operator token.
	Admin *echo.Group
	// Bank is /bank/v1: banks' API, every route already authenticated as
	// a bank (identity.PrincipalOf).
	Bank *echo.Group
	// Distributor is /distributor/v1: distributors' JSON API, every route
	// already authenticated as a distributor.
	Distributor *echo.Group
	// Portal is /portal: distributors' pages in a browser. It is not
	// authenticated, so that the sign-in page can be reached; the service
	// guards its other pages with identity's session middleware.
	Portal *echo.Group
}
