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
	// Bank is /bank/v1: banks' API.
	Bank *echo.Group
	// Distributor is /portal: distributors' API.
	Distributor *echo.Group
}
