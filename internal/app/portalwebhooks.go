package app

import (
	"context"
	"time"

	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/services/marketplace"
	"github.com/tani-platform/tani/services/webhooks"
)

// PortalWebhooks adapts the webhooks module's Go API to what the portal's
// webhooks pages need (marketplace.PortalWebhooks): services share no
// code, so the composition root translates between their types. Every
// rule stays the webhooks module's.
func PortalWebhooks(s *webhooks.Service) marketplace.PortalWebhooks { return portalWebhooks{s} }

type portalWebhooks struct{ s *webhooks.Service }

func (w portalWebhooks) EventTypes(k identity.Kind) []marketplace.WebhookEventType {
	var out []marketplace.WebhookEventType
	for _, t := range webhooks.EventTypesFor(k) {
		out = append(out, marketplace.WebhookEventType{Type: t.Type, Summary: t.Summary})
	}
	return out
}

func (w portalWebhooks) Endpoints(ctx context.Context, p identity.Principal) ([]marketplace.WebhookEndpoint, error) {
	eps, err := w.s.Endpoints(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]marketplace.WebhookEndpoint, len(eps))
	for i, e := range eps {
		out[i] = portalEndpoint(e)
	}
	return out, nil
}

func (w portalWebhooks) Endpoint(ctx context.Context, p identity.Principal, id string) (marketplace.WebhookEndpoint, error) {
	e, err := w.s.Endpoint(ctx, p, id)
	return portalEndpoint(e), err
}

func (w portalWebhooks) CreateEndpoint(ctx context.Context, p identity.Principal, in marketplace.WebhookInput) (marketplace.WebhookEndpoint, error) {
	e, err := w.s.CreateEndpoint(ctx, p, endpointInput(in))
	return portalEndpoint(e), err
}

func (w portalWebhooks) UpdateEndpoint(ctx context.Context, p identity.Principal, id string, in marketplace.WebhookInput) (marketplace.WebhookEndpoint, error) {
	e, err := w.s.UpdateEndpoint(ctx, p, id, endpointInput(in))
	return portalEndpoint(e), err
}

func (w portalWebhooks) DeleteEndpoint(ctx context.Context, p identity.Principal, id string) error {
	return w.s.DeleteEndpoint(ctx, p, id)
}

func (w portalWebhooks) RotateSecret(ctx context.Context, p identity.Principal, id string, overlap time.Duration) (marketplace.WebhookEndpoint, error) {
	e, err := w.s.RotateSecret(ctx, p, id, overlap)
	return portalEndpoint(e), err
}

func (w portalWebhooks) Deliveries(ctx context.Context, p identity.Principal, id string, limit int) ([]marketplace.WebhookDelivery, error) {
	ds, err := w.s.Deliveries(ctx, p, id, webhooks.DeliveryFilter{Limit: limit, Attempts: true})
	if err != nil {
		return nil, err
	}
	out := make([]marketplace.WebhookDelivery, len(ds))
	for i, d := range ds {
		out[i] = marketplace.WebhookDelivery{ID: d.ID, EventID: d.EventID, EventType: d.EventType, State: d.State, Attempts: d.Attempts,
			ResponseStatus: d.ResponseStatus, LastAttemptAt: d.LastAttemptAt, NextAttemptAt: d.NextAttemptAt}
		for _, a := range d.AttemptLog {
			out[i].AttemptLog = append(out[i].AttemptLog, marketplace.WebhookAttempt{N: a.N, At: a.At, ResponseStatus: a.ResponseStatus, Error: a.Error, LatencyMS: a.LatencyMS})
		}
	}
	return out, nil
}

func (w portalWebhooks) ReplaySince(ctx context.Context, p identity.Principal, id, since string) (int, time.Time, error) {
	return w.s.ReplaySince(ctx, p, id, since)
}

func portalEndpoint(e webhooks.Endpoint) marketplace.WebhookEndpoint {
	return marketplace.WebhookEndpoint{ID: e.ID, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes, Enabled: e.Enabled,
		DisabledReason: e.DisabledReason, FailingSince: e.FailingSince, LastSuccessAt: e.LastSuccessAt, LastFailureAt: e.LastFailureAt,
		PreviousSecretExpires: e.PreviousSecretExpires, PendingDeliveries: e.PendingDeliveries, Secret: e.Secret}
}

func endpointInput(in marketplace.WebhookInput) webhooks.EndpointInput {
	return webhooks.EndpointInput{URL: in.URL, Description: in.Description, EventTypes: in.EventTypes, Enabled: in.Enabled}
}
