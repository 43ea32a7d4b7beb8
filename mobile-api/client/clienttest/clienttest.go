// Package clienttest makes ready-to-sync agents for tests: an organization,
// an agent logged in, a device enrolled. It must never be imported by
// non-test code.
package clienttest

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/mobile-api/client"
)

// Agent is a logged-in agent with an enrolled device.
type Agent struct {
	*client.Client
	ID       string
	OrgID    string
	DeviceID string
	Key      ed25519.PrivateKey
	Username string
	Password string
}

// MustAgent creates a field organization and an agent in region, logs in
// and enrolls a fresh device key.
func MustAgent(tb testing.TB, baseURL, operatorToken, region string) *Agent {
	tb.Helper()
	ctx := context.Background()
	admin := client.NewAdmin(baseURL, operatorToken)
	org, err := admin.CreateOrganization(ctx, "Field team "+uuid.NewString()[:8], "field")
	if err != nil {
		tb.Fatalf("create organization: %v", err)
	}
	return MustAgentIn(tb, baseURL, operatorToken, org, region)
}

// MustAgentIn creates an agent in an existing organization.
func MustAgentIn(tb testing.TB, baseURL, operatorToken, orgID, region string) *Agent {
	tb.Helper()
	ctx := context.Background()
	admin := client.NewAdmin(baseURL, operatorToken)
	username := "agent" + uuid.NewString()[:8]
	password := "correct horse battery"
	id, err := admin.CreateAgent(ctx, orgID, username, password, "Agent "+username, region)
	if err != nil {
		tb.Fatalf("create agent: %v", err)
	}
	c := client.New(baseURL, nil)
	if err := c.Login(ctx, username, password); err != nil {
		tb.Fatalf("login: %v", err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	device, err := c.EnrollDevice(ctx, "test phone", key)
	if err != nil {
		tb.Fatalf("enroll device: %v", err)
	}
	return &Agent{Client: c, ID: id, OrgID: orgID, DeviceID: device, Key: key, Username: username, Password: password}
}
