package marketplace

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
)

// The portal's webhooks pages: a distributor's people manage the
// organization's Standard Webhooks endpoints as its API keys do on
// /distributor/v1/webhooks. Every rule (the SSRF guard, the catalogue, the
// role, the limits) is the webhooks module's: these handlers read forms,
// call its Go API and draw the answer.

// PortalWebhooks is what the portal needs of the webhooks module. The
// portal owns the interface and its types; the composition root adapts
// the webhooks module's Go API to it (services share no code, and the
// webhooks module knows nothing of pages). Each method checks the
// principal itself: any of the organization's people may read, only an
// admin may change; bad input is an apperr Invalid error with fields, and
// stores nothing.
type PortalWebhooks interface {
	// EventTypes is the catalogue an organization of kind k may subscribe to.
	EventTypes(k identity.Kind) []WebhookEventType
	Endpoints(ctx context.Context, p identity.Principal) ([]WebhookEndpoint, error)
	Endpoint(ctx context.Context, p identity.Principal, id string) (WebhookEndpoint, error)
	// CreateEndpoint and RotateSecret answer with the secret, the one time
	// it is known.
	CreateEndpoint(ctx context.Context, p identity.Principal, in WebhookInput) (WebhookEndpoint, error)
	UpdateEndpoint(ctx context.Context, p identity.Principal, id string, in WebhookInput) (WebhookEndpoint, error)
	DeleteEndpoint(ctx context.Context, p identity.Principal, id string) error
	RotateSecret(ctx context.Context, p identity.Principal, id string, overlap time.Duration) (WebhookEndpoint, error)
	// Deliveries are the endpoint's newest deliveries, at most limit,
	// each with its attempts.
	Deliveries(ctx context.Context, p identity.Principal, id string, limit int) ([]WebhookDelivery, error)
	// ReplaySince schedules again every event since (RFC 3339) and says
	// how many, and the time it read.
	ReplaySince(ctx context.Context, p identity.Principal, id, since string) (int, time.Time, error)
}

// WebhookEventType is an event type of the catalogue.
type WebhookEventType struct{ Type, Summary string }

// WebhookEndpoint is an endpoint with its health. Secret is set only in
// the answer of a creation or a rotation.
type WebhookEndpoint struct {
	ID, URL, Description string
	EventTypes           []string
	Enabled              bool
	// DisabledReason is "organization" or "failing" when not Enabled.
	DisabledReason                             *string
	FailingSince, LastSuccessAt, LastFailureAt *time.Time
	PreviousSecretExpires                      *time.Time
	PendingDeliveries                          int
	Secret                                     string
}

// WebhookInput is what a form sets (nil: unchanged).
type WebhookInput struct {
	URL, Description *string
	EventTypes       *[]string
	Enabled          *bool
}

// WebhookDelivery is one event's delivery to the endpoint.
type WebhookDelivery struct {
	ID                           int64
	EventID, EventType, State    string
	Attempts                     int
	ResponseStatus               *int
	LastAttemptAt, NextAttemptAt *time.Time
	AttemptLog                   []WebhookAttempt
}

// WebhookAttempt is one HTTP attempt of a delivery.
type WebhookAttempt struct {
	N              int
	At             time.Time
	ResponseStatus *int
	Error          *string
	LatencyMS      int
}

// defaultOverlap is how long a rotated-out secret keeps signing unless
// the form says otherwise (the API's default).
const defaultOverlap = 24 * time.Hour

// portalDeliveries is how many recent deliveries an endpoint's page shows.
const portalDeliveries = 50

func (s *Service) webhookRoutes(g *echo.Group, guard echo.MiddlewareFunc) {
	g.GET("/webhooks", s.pageWebhooks, guard)
	g.POST("/webhooks", s.pageAddWebhook, guard)
	g.GET("/webhooks/:id", s.pageWebhook, guard)
	g.POST("/webhooks/:id/rotate", s.pageRotateWebhook, guard)
	g.POST("/webhooks/:id/enable", s.pageEnableWebhook(true), guard)
	g.POST("/webhooks/:id/disable", s.pageEnableWebhook(false), guard)
	g.POST("/webhooks/:id/delete", s.pageDeleteWebhook, guard)
	g.POST("/webhooks/:id/replay", s.pageReplayWebhook, guard)
}

type webhooksData struct {
	Endpoints  []WebhookEndpoint
	EventTypes []WebhookEventType
	Admin      bool
	Form       webhookForm
}

// webhookForm is the add form as typed, drawn again after a refusal.
type webhookForm struct {
	URL, Description string
	EventTypes       []string
}

func (f webhookForm) Has(t string) bool { return slices.Contains(f.EventTypes, t) }

func (s *Service) webhooksData(c echo.Context, p identity.Principal, form webhookForm) (webhooksData, error) {
	eps, err := s.webhooks.Endpoints(c.Request().Context(), p)
	if err != nil {
		return webhooksData{}, err
	}
	return webhooksData{Endpoints: eps, EventTypes: s.webhooks.EventTypes(p.Kind), Admin: p.Role == "admin", Form: form}, nil
}

func (s *Service) pageWebhooks(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	d, err := s.webhooksData(c, p, webhookForm{})
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "webhooks", "Webhooks", d, nil)
}

// pageAddWebhook registers an endpoint and answers with its secret, the
// one time it is shown (no redirect: the secret is never stored where a
// later page could read it).
func (s *Service) pageAddWebhook(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	form := webhookForm{URL: c.FormValue("url"), Description: c.FormValue("description")}
	if fv, err := c.FormParams(); err == nil {
		form.EventTypes = fv["event_types"]
	}
	in := WebhookInput{URL: &form.URL, Description: &form.Description, EventTypes: &form.EventTypes}
	e, perr := s.webhooks.CreateEndpoint(c.Request().Context(), p, in)
	if perr == nil {
		return s.render(c, http.StatusCreated, "webhooksecret", "Webhook secret", secretData{Endpoint: e, Created: true}, nil)
	}
	d, err := s.webhooksData(c, p, form)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusBadRequest, "webhooks", "Webhooks", d, titled(perr, "the endpoint was not added"))
}

// titled heads a refusal with field errors by what did not happen (the
// module's message names the input, the page says the outcome).
func titled(err error, msg string) error {
	if e, ok := apperr.As(err); ok && e.Code != apperr.Internal && len(e.Fields) > 0 {
		e.Message = msg
	}
	return err
}

type secretData struct {
	Endpoint WebhookEndpoint
	// Created: a new endpoint; else a rotation.
	Created bool
	Overlap string
}

type webhookData struct {
	Endpoint   WebhookEndpoint
	Deliveries []WebhookDelivery
	Admin      bool
	Since      string
}

func (s *Service) webhookPage(c echo.Context, p identity.Principal, status int, perr error) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	e, err := s.webhooks.Endpoint(ctx, p, id)
	if err != nil {
		return s.webhooksError(c, p, err)
	}
	ds, err := s.webhooks.Deliveries(ctx, p, id, portalDeliveries)
	if err != nil {
		return err
	}
	since := c.FormValue("since")
	if since == "" {
		since = s.now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
	}
	d := webhookData{Endpoint: e, Deliveries: ds, Admin: p.Role == "admin", Since: since}
	return s.render(c, status, "webhook", "Webhook endpoint", d, perr)
}

// webhooksError draws an error about an endpoint (not found, not
// allowed, a bad id) on the list.
func (s *Service) webhooksError(c echo.Context, p identity.Principal, perr error) error {
	if e, ok := apperr.As(perr); !ok || e.Code == apperr.Internal {
		return perr
	}
	d, err := s.webhooksData(c, p, webhookForm{})
	if err != nil {
		return err
	}
	return s.render(c, http.StatusBadRequest, "webhooks", "Webhooks", d, perr)
}

func (s *Service) pageWebhook(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	return s.webhookPage(c, p, http.StatusOK, nil)
}

func (s *Service) pageRotateWebhook(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	overlap, ok := defaultOverlap, true
	if v := c.FormValue("overlap"); v != "" {
		overlap, ok = rotateOverlaps[v]
	}
	if !ok {
		return s.webhookActionError(c, p, apperr.Fields("the secret was not rotated",
			apperr.FieldError{Field: "overlap", Message: "must be one of the choices offered (0, 1h, 24h, 168h)"}))
	}
	e, err := s.webhooks.RotateSecret(c.Request().Context(), p, c.Param("id"), overlap)
	if err != nil {
		return s.webhookActionError(c, p, err)
	}
	return s.render(c, http.StatusOK, "webhooksecret", "Webhook secret", secretData{Endpoint: e, Overlap: overlap.String()}, nil)
}

// webhookActionError draws a refused action on the endpoint's page, or
// on the list when the endpoint cannot be shown.
func (s *Service) webhookActionError(c echo.Context, p identity.Principal, perr error) error {
	e, ok := apperr.As(perr)
	if !ok || e.Code == apperr.Internal {
		return perr
	}
	if e.Code == apperr.NotFound || slices.ContainsFunc(e.Fields, func(f apperr.FieldError) bool { return f.Field == "id" }) {
		return s.webhooksError(c, p, perr)
	}
	return s.webhookPage(c, p, http.StatusBadRequest, perr)
}

// rotateOverlaps are the overlaps the rotate form offers.
var rotateOverlaps = map[string]time.Duration{"0": 0, "1h": time.Hour, "24h": 24 * time.Hour, "168h": 7 * 24 * time.Hour}

func (s *Service) pageEnableWebhook(enable bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		e, err := s.webhooks.UpdateEndpoint(c.Request().Context(), p, c.Param("id"), WebhookInput{Enabled: &enable})
		if err != nil {
			return s.webhookActionError(c, p, err)
		}
		done := "Disabled: nothing is sent until you enable it again"
		if enable {
			done = "Enabled: deliveries resume; replay what it missed below"
		}
		return c.Redirect(http.StatusSeeOther, PortalBase+"/webhooks/"+e.ID+"?done="+url.QueryEscape(done))
	}
}

func (s *Service) pageDeleteWebhook(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	e, err := s.webhooks.Endpoint(ctx, p, c.Param("id"))
	if err == nil {
		err = s.webhooks.DeleteEndpoint(ctx, p, e.ID)
	}
	if err != nil {
		return s.webhookActionError(c, p, err)
	}
	return c.Redirect(http.StatusSeeOther, PortalBase+"/webhooks?done="+url.QueryEscape("Deleted the endpoint "+e.URL))
}

// pageReplayWebhook replays since the time typed: the form's
// datetime-local (minutes, read as UTC) or an RFC 3339 time.
func (s *Service) pageReplayWebhook(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	since := strings.TrimSpace(c.FormValue("since"))
	if t, err := time.Parse("2006-01-02T15:04", since); err == nil {
		since = t.UTC().Format(time.RFC3339)
	}
	n, at, err := s.webhooks.ReplaySince(c.Request().Context(), p, c.Param("id"), since)
	if err != nil {
		return s.webhookActionError(c, p, titled(err, "nothing was replayed"))
	}
	done := "Replaying " + plural(n, "delivery", "deliveries") + " since " + at.UTC().Format("2006-01-02 15:04 UTC")
	return c.Redirect(http.StatusSeeOther, PortalBase+"/webhooks/"+c.Param("id")+"?done="+url.QueryEscape(done))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
