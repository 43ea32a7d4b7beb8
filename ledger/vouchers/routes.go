package vouchers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Routes mounts the projection's operator routes on admin (/admin/v1):
//
//	GET  /vouchers/projection          the checkpoint: the last event projected
//	POST /vouchers/projection/rebuild  wipe the projection; it is rebuilt from the chain's events
func (p *Projection) Routes(admin *echo.Group) {
	admin.GET("/vouchers/projection", func(c echo.Context) error {
		block, tx, err := p.Position(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"chain": p.chain, "block_number": block, "tx_id": tx})
	})
	admin.POST("/vouchers/projection/rebuild", func(c echo.Context) error {
		if err := p.Rebuild(c.Request().Context()); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]any{"chain": p.chain, "status": "rebuilding from block 0"})
	})
}
