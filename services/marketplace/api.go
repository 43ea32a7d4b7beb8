package marketplace

import (
	_ "embed"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
)

// openAPI is the hand-written OpenAPI 3 document of the marketplace's
// routes under /distributor/v1. The document served (Deps.Document) is it
// with the other modules' parts merged in by the composition root
// (identity's, consent's, the webhooks'); a test holds that to every route
// mounted under /distributor/v1, both ways.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the marketplace's own document.
func OpenAPI() []byte { return openAPI }

// serveDocument serves the OpenAPI document. It is public, like the
// banks' /bank/v1/openapi.json: the document describes the API, not any
// organization, and a developer reads it before holding a key.
func (s *Service) serveDocument(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.document)
}

// apiRoutes mounts the JSON API; every route is already authenticated as
// a distributor (identity.Require in the composition root).
func (s *Service) apiRoutes(g *echo.Group) {
	g.GET("/products", s.apiProducts)
	g.POST("/products", s.apiCreateProduct)
	g.GET("/products/:id", s.apiProduct)
	g.PATCH("/products/:id", s.apiUpdateProduct)
	g.GET("/orders", s.apiOrders)
	g.POST("/orders", s.apiPlaceOrder)
	g.GET("/orders/:id", s.apiOrder)
	g.POST("/orders/:id/accept", s.apiAct(Accept))
	g.POST("/orders/:id/reject", s.apiAct(Reject))
	g.POST("/orders/:id/ship", s.apiAct(Ship))
	g.POST("/orders/:id/cancel", s.apiAct(Cancel))
	g.GET("/orders/:id/receipts", s.apiOrderReceipts)
	g.GET("/deliveries", s.apiDeliveries)
	g.GET("/deliveries/:id", s.apiDelivery)
	g.GET("/vouchers", s.apiVouchers)
	g.GET("/settlements", s.apiSettlements)
	g.GET("/farmers/:id/basket", s.apiBasket)
	g.GET("/rates", s.apiRates)
	g.GET("/demand", s.apiDemand)
	g.POST("/demand/refresh", s.apiRefreshDemand)
	g.GET("/epcis/events", s.apiEPCIS)
	g.GET("/farmers/:id/epcis/harvests", s.apiFarmEPCIS(consent.Harvests))
	g.GET("/farmers/:id/epcis/sales", s.apiFarmEPCIS(consent.Sales))
}

// principal is the authenticated distributor of a request.
func principal(c echo.Context) (identity.Principal, error) {
	p, ok := identity.PrincipalOf(c)
	if !ok || p.Kind != identity.Distributor {
		return identity.Principal{}, apperr.Errorf(apperr.Unauthorized, "no authenticated distributor")
	}
	return p, nil
}

func requestID(c echo.Context) string { return c.Response().Header().Get(echo.HeaderXRequestID) }

// limitParam reads ?limit=.
func limitParam(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPage {
		return 0, apperr.Fields("bad limit", apperr.FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(MaxPage)})
	}
	return n, nil
}

func (s *Service) apiProducts(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	page, err := s.Products(c.Request().Context(), p.OrganizationID, ProductFilter{Category: c.QueryParam("category"), Crop: c.QueryParam("crop"), Cursor: c.QueryParam("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Service) apiCreateProduct(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	var in ProductInput
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	prod, err := s.CreateProduct(c.Request().Context(), p.OrganizationID, in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, prod)
}

func (s *Service) apiProduct(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	prod, err := s.Product(c.Request().Context(), p.OrganizationID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, prod)
}

func (s *Service) apiUpdateProduct(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	var in ProductPatch
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	prod, err := s.UpdateProduct(c.Request().Context(), p.OrganizationID, c.Param("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, prod)
}

func (s *Service) apiOrders(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	page, err := s.Orders(c.Request().Context(), p.OrganizationID, OrderFilter{Status: c.QueryParam("status"), Cursor: c.QueryParam("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Service) apiPlaceOrder(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	var in OrderInput
	if err := httpserver.DecodeJSON(c, &in); err != nil {
		return err
	}
	o, err := s.PlaceOrder(c.Request().Context(), p, requestID(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, o)
}

func (s *Service) apiOrder(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	o, err := s.Order(c.Request().Context(), p.OrganizationID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, o)
}

func (s *Service) apiAct(t Transition) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		var in struct {
			Reason string `json:"reason"`
		}
		if t == Reject || t == Cancel || c.Request().ContentLength > 0 {
			if err := httpserver.DecodeJSON(c, &in); err != nil {
				return err
			}
		}
		o, err := s.Act(c.Request().Context(), p, c.Param("id"), t, in.Reason)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, o)
	}
}

func (s *Service) apiOrderReceipts(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	rs, err := s.OrderReceipts(c.Request().Context(), p.OrganizationID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"receipts": rs})
}

func (s *Service) apiDeliveries(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	page, err := s.Deliveries(c.Request().Context(), p.OrganizationID, DeliveryFilter{Cursor: c.QueryParam("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Service) apiDelivery(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	d, err := s.Delivery(c.Request().Context(), p.OrganizationID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Service) apiVouchers(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	page, err := s.VoucherOrders(c.Request().Context(), p.OrganizationID, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Service) apiSettlements(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	st, err := s.Settlements(c.Request().Context(), p.OrganizationID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Service) apiBasket(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	b, err := s.RecommendBasket(c.Request().Context(), p, requestID(c), c.Param("id"), c.QueryParam("plot_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func (s *Service) apiRates(c echo.Context) error {
	r, err := LoadRates(c.Request().Context(), s.readPool)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Service) apiDemand(c echo.Context) error {
	o, err := s.Demand(c.Request().Context(), DemandFilter{District: c.QueryParam("district"), Crop: c.QueryParam("crop"), Category: c.QueryParam("category")})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, o)
}

// apiRefreshDemand publishes the outlook from its plan, at most once a
// minute: any distributor may ask, and a refresh that finds the plan stale
// (new season, new rate table) rebuilds it from every verified plot.
func (s *Service) apiRefreshDemand(c echo.Context) error {
	ctx := c.Request().Context()
	o, err := s.Demand(ctx, DemandFilter{})
	if err != nil {
		return err
	}
	if o.Run != nil && s.now().Sub(o.Run.ComputedAt) < time.Minute {
		return c.JSON(http.StatusOK, o.Run)
	}
	run, err := s.RefreshDemand(ctx)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, run)
}
