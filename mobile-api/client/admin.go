package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"
)

// Admin is an operator's client for /admin/v1.
type Admin struct {
	base  string
	token string
	http  *http.Client
}

// NewAdmin returns an operator client using the operator token.
func NewAdmin(base, token string) *Admin {
	return &Admin{base: base, token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

// CreateOrganization creates an organization of kind operator, field, bank
// or distributor and returns its id.
func (a *Admin) CreateOrganization(ctx context.Context, name, kind string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := do(ctx, a.http, http.MethodPost, a.base+"/admin/v1/organizations", a.token, map[string]string{"name": name, "kind": kind}, &out)
	return out.ID, err
}

// CreateAgent creates an agent account and returns its id.
func (a *Admin) CreateAgent(ctx context.Context, orgID, username, password, name, region string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := do(ctx, a.http, http.MethodPost, a.base+"/admin/v1/agents", a.token, map[string]string{
		"organization_id": orgID, "username": username, "password": password, "name": name, "region": region,
	}, &out)
	return out.ID, err
}

// Assign lets an agent serve a farmer.
func (a *Admin) Assign(ctx context.Context, farmerID, agentID string) error {
	return do(ctx, a.http, http.MethodPost, a.base+"/admin/v1/assignments", a.token, map[string]string{"farmer_id": farmerID, "agent_id": agentID}, nil)
}

// RevokeDevice revokes any device.
func (a *Admin) RevokeDevice(ctx context.Context, deviceID, reason string) error {
	return do(ctx, a.http, http.MethodPost, a.base+"/admin/v1/devices/"+deviceID+"/revoke", a.token, map[string]string{"reason": reason}, nil)
}

// RandomPassword returns a strong random password for generated accounts.
func RandomPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
