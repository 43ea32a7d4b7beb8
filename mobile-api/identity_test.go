package mobileapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

func post(t *testing.T, url, token string, body any) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, jsonBody(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestIdentity(t *testing.T) {
	tani := apptest.MustStart(t, "-target=mobile-api")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	t.Run("ErrLogin_WrongPasswordOrUnknownUser", func(t *testing.T) {
		for _, creds := range []map[string]string{
			{"username": agent.Username, "password": "wrong password!"},
			{"username": "nobody", "password": agent.Password},
		} {
			if code, body := post(t, tani.URL+"/mobile/v1/auth/login", "", creds); code != http.StatusUnauthorized || !strings.Contains(string(body), "wrong username or password") {
				t.Errorf("login %s = %d %s, want 401 without saying which part was wrong", creds["username"], code, body)
			}
		}
	})

	t.Run("OK_RefreshRotates_ErrReuseRevokesAll", func(t *testing.T) {
		c := client.New(tani.URL, nil)
		if err := c.Login(ctx, agent.Username, agent.Password); err != nil {
			t.Fatal(err)
		}
		var first struct {
			RefreshToken string `json:"refresh_token"`
		}
		_, body := post(t, tani.URL+"/mobile/v1/auth/login", "", map[string]string{"username": agent.Username, "password": agent.Password})
		json.Unmarshal(body, &first)
		code, body := post(t, tani.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken})
		if code != http.StatusOK {
			t.Fatalf("refresh = %d %s", code, body)
		}
		var second struct {
			RefreshToken string `json:"refresh_token"`
		}
		json.Unmarshal(body, &second)
		// The first token, presented again, was stolen: everything is revoked.
		if code, _ := post(t, tani.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken}); code != http.StatusUnauthorized {
			t.Errorf("reused refresh token = %d, want 401", code)
		}
		if code, _ := post(t, tani.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": second.RefreshToken}); code != http.StatusUnauthorized {
			t.Errorf("sibling refresh token after reuse = %d, want 401 (revoked)", code)
		}
	})

	t.Run("ErrAdminNeedsOperatorToken", func(t *testing.T) {
		body := map[string]string{"name": "Bank Rakyat Demo", "kind": "bank"}
		if code, _ := post(t, tani.URL+"/admin/v1/organizations", "", body); code != http.StatusUnauthorized {
			t.Errorf("no token = %d, want 401", code)
		}
		if code, _ := post(t, tani.URL+"/admin/v1/organizations", accessToken(t, tani, agent), body); code != http.StatusUnauthorized {
			t.Errorf("agent token on admin = %d, want 401", code)
		}
	})

	t.Run("ErrAgentAPINeedsAgentToken", func(t *testing.T) {
		if code, _ := post(t, tani.URL+"/mobile/v1/devices", tani.OperatorToken, map[string]string{"name": "x", "public_key": "AAAA"}); code != http.StatusUnauthorized {
			t.Errorf("operator token on agent API = %d, want 401", code)
		}
	})

	t.Run("ErrAdminBadInput", func(t *testing.T) {
		tests := []struct {
			path  string
			body  any
			code  int
			field string
		}{
			{"/admin/v1/organizations", map[string]string{"name": "X", "kind": "bank"}, 400, "name"},
			{"/admin/v1/organizations", map[string]string{"name": "Koperasi Tani", "kind": "church"}, 400, "kind"},
			{"/admin/v1/agents", map[string]string{"organization_id": uuid.NewString(), "username": "newagent1", "password": "long enough pass", "name": "A", "region": "Bali"}, 400, "organization_id"},
			{"/admin/v1/agents", map[string]string{"organization_id": agent.OrgID, "username": "x", "password": "short", "name": "A", "region": "Bali"}, 400, "password"},
			{"/admin/v1/agents", map[string]string{"organization_id": agent.OrgID, "username": agent.Username, "password": "long enough pass", "name": "A", "region": "Bali"}, 409, ""},
			{"/admin/v1/assignments", map[string]string{"farmer_id": uuid.NewString(), "agent_id": uuid.NewString()}, 400, "agent_id"},
		}
		for _, tt := range tests {
			code, body := post(t, tani.URL+tt.path, tani.OperatorToken, tt.body)
			if code != tt.code || !strings.Contains(string(body), `"`+tt.field) {
				t.Errorf("POST %s %v = %d %s, want %d naming %q", tt.path, tt.body, code, body, tt.code, tt.field)
			}
		}
	})

	t.Run("ErrEnrollBadKey", func(t *testing.T) {
		token := accessToken(t, tani, agent)
		for _, key := range []string{"not base64!", "AAAA"} {
			if code, body := post(t, tani.URL+"/mobile/v1/devices", token, map[string]string{"name": "phone", "public_key": key}); code != http.StatusBadRequest || !strings.Contains(string(body), "public_key") {
				t.Errorf("enroll key %q = %d %s, want 400 on public_key", key, code, body)
			}
		}
		pub := agentPublicKey(agent)
		if code, _ := post(t, tani.URL+"/mobile/v1/devices", token, map[string]string{"name": "phone", "public_key": pub}); code != http.StatusConflict {
			t.Errorf("enrolling an enrolled key = %d, want 409", code)
		}
	})
}

func TestConsent(t *testing.T) {
	tani := apptest.MustStart(t, "-log.level=info")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer := uuid.NewString()
	reg, regID := signed(t, agent, "farmer.registered", farmer, "")
	mustSync(t, agent, reg)
	waitStatus(t, agent, regID, "ingested")

	challenge, err := agent.RequestOTP(ctx, farmer)
	if err != nil {
		t.Fatal(err)
	}
	// The farmer receives the code by SMS; the development sender logs it.
	code := smsCode(t, tani, challenge)
	consent := func(code string) json.RawMessage {
		raw, _, err := agent.Record("consent.granted", time.Now(), loc, map[string]any{
			"farmer_id": farmer, "consent_id": uuid.NewString(), "grantee_organization_id": uuid.NewString(),
			"scopes": []string{"plots", "harvests"}, "expires_at": time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339),
			"otp_challenge_id": challenge, "otp_code": code,
		})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	t.Run("ErrWrongCode", func(t *testing.T) {
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		_, err := agent.Sync(ctx, []json.RawMessage{consent(wrong)})
		wantAPIError(t, err, http.StatusBadRequest, "records[0].payload.otp_code")
	})
	t.Run("OK_RightCodeOnce", func(t *testing.T) {
		if res := mustSync(t, agent, consent(code)); res[0].Status != "accepted" {
			t.Fatalf("consent = %+v, want accepted", res[0])
		}
		_, err := agent.Sync(ctx, []json.RawMessage{consent(code)})
		wantAPIError(t, err, http.StatusBadRequest, "records[0].payload.otp_code")
	})
	t.Run("ErrOTPForUnassignedFarmer", func(t *testing.T) {
		_, err := agent.RequestOTP(ctx, uuid.NewString())
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
			t.Errorf("err = %v, want 403", err)
		}
	})
}

// smsCode reads the code the development SMS sender logged (the table
// holds only its hash).
func smsCode(t *testing.T, tani *apptest.Running, challenge string) string {
	t.Helper()
	for _, line := range tani.Logs() {
		if m := regexp.MustCompile(`your consent code is (\d{6})`).FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no SMS for challenge %s in the logs", challenge)
	return ""
}

func agentPublicKey(a *clienttest.Agent) string {
	return base64.StdEncoding.EncodeToString(a.Key.Public().(ed25519.PublicKey))
}
