package client

import (
	"context"
	"net/http"
	"net/url"
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

// ConsentRequestsPage is one page of the requests awaiting answers.
type ConsentRequestsPage struct {
	Requests []ConsentRequest `json:"consent_requests"`
	// Cursor, while More is true, asks for the next page.
	Cursor string `json:"cursor"`
	More   bool   `json:"more"`
}

// ConsentRequests lists the requests awaiting the answer of farmers
// assigned to this agent, oldest first, reading every page.
func (c *Client) ConsentRequests(ctx context.Context) ([]ConsentRequest, error) {
	var all []ConsentRequest
	cursor := ""
	for {
		page, err := c.ConsentRequestsPage(ctx, cursor, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Requests...)
		if !page.More {
			return all, nil
		}
		cursor = page.Cursor
	}
}

// ConsentRequestsPage reads one page of ConsentRequests: cursor "" for
// the first, then the page's Cursor while its More is true; limit 0 takes
// the server's default page size.
func (c *Client) ConsentRequestsPage(ctx context.Context, cursor string, limit int) (ConsentRequestsPage, error) {
	q := url.Values{}
	setPage(q, cursor, limit)
	path := "/mobile/v1/consent-requests"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var page ConsentRequestsPage
	err := c.authed(ctx, http.MethodGet, path, nil, &page)
	return page, err
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
