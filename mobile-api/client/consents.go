package client

import (
	"context"
	"net/http"
	"time"
)

// ConsentRequest is an organization's request for a farmer's consent,
// waiting for the farmer's answer (see mobileapi.ConsentRequest). Answer
// it with a consent.granted (consent_id = ID, scopes within Scopes,
// expires_at at most DurationDays after capture, the farmer's one-time
// code) or a consent.refused with the same consent_id.
type ConsentRequest struct {
	ID               string    `json:"id"`
	FarmerID         string    `json:"farmer_id"`
	OrganizationID   string    `json:"organization_id"`
	OrganizationName string    `json:"organization_name"`
	OrganizationKind string    `json:"organization_kind"`
	Scopes           []string  `json:"scopes"`
	DurationDays     int       `json:"duration_days"`
	Purpose          string    `json:"purpose"`
	RequestedAt      time.Time `json:"requested_at"`
	AnswerBy         time.Time `json:"answer_by"`
}

// ConsentRequests lists the requests awaiting the answer of farmers
// assigned to this agent.
func (c *Client) ConsentRequests(ctx context.Context) ([]ConsentRequest, error) {
	var out struct {
		Requests []ConsentRequest `json:"consent_requests"`
	}
	err := c.authed(ctx, http.MethodGet, "/mobile/v1/consent-requests", nil, &out)
	return out.Requests, err
}

// Access is one read of a farmer's data by an organization.
type Access struct {
	ID               int64     `json:"id"`
	At               time.Time `json:"at"`
	OrganizationName string    `json:"organization_name"`
	OrganizationKind string    `json:"organization_kind"`
	Scopes           []string  `json:"scopes"`
	Purpose          string    `json:"purpose"`
	Allowed          bool      `json:"allowed"`
}

// AccessLog lists who read a farmer's data, newest first (the newest 50).
func (c *Client) AccessLog(ctx context.Context, farmerID string) ([]Access, error) {
	var out struct {
		Accesses []Access `json:"accesses"`
	}
	err := c.authed(ctx, http.MethodGet, "/mobile/v1/farmers/"+farmerID+"/access-log", nil, &out)
	return out.Accesses, err
}
