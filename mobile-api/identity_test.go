package mobileapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
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

func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestIdentity(t *testing.T) {
	tani := apptest.MustStart(t, "-target=mobile-api")
	// A second mobile-api process of the same deployment (database and
	// keys), as in a split deployment behind a load balancer.
	peer := apptest.MustStart(t, "-target=mobile-api", "-database.url="+tani.DatabaseURL)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")

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
		victim := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
		var first, second, other struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		_, body := post(t, tani.URL+"/mobile/v1/auth/login", "", map[string]string{"username": victim.Username, "password": victim.Password})
		json.Unmarshal(body, &first)
		_, body = post(t, peer.URL+"/mobile/v1/auth/login", "", map[string]string{"username": victim.Username, "password": victim.Password})
		json.Unmarshal(body, &other) // the phone's other session
		code, body := post(t, tani.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken})
		if code != http.StatusOK {
			t.Fatalf("refresh = %d %s", code, body)
		}
		json.Unmarshal(body, &second)
		access := []string{first.AccessToken, second.AccessToken, other.AccessToken}
		for _, server := range []*apptest.Running{tani, peer} {
			for i, token := range access {
				if code := get(t, server.URL+"/mobile/v1/devices", token); code != http.StatusOK {
					t.Fatalf("access token %d on %s before reuse = %d, want 200", i, server.URL, code)
				}
				if code := get(t, server.URL+"/mobile/v1/media/", token); code == http.StatusUnauthorized {
					t.Fatalf("access token %d on %s/mobile/v1/media/ before reuse = %d, want it accepted", i, server.URL, code)
				}
			}
		}
		// The first token, presented again, was stolen: everything is revoked.
		if code, _ := post(t, tani.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken}); code != http.StatusUnauthorized {
			t.Errorf("reused refresh token = %d, want 401", code)
		}
		for _, refresh := range []string{second.RefreshToken, other.RefreshToken} {
			if code, _ := post(t, peer.URL+"/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}); code != http.StatusUnauthorized {
				t.Errorf("sibling refresh token after reuse = %d, want 401 (revoked)", code)
			}
		}
		// Every access token issued before, by either process, is refused
		// at once by both, on the agent API and on media uploads.
		for _, server := range []*apptest.Running{tani, peer} {
			for i, token := range access {
				for _, path := range []string{"/mobile/v1/devices", "/mobile/v1/media/"} {
					if code := get(t, server.URL+path, token); code != http.StatusUnauthorized {
						t.Errorf("access token %d on %s%s after reuse = %d, want 401", i, server.URL, path, code)
					}
				}
			}
		}
		// A new login works again.
		_, body = post(t, peer.URL+"/mobile/v1/auth/login", "", map[string]string{"username": victim.Username, "password": victim.Password})
		var fresh struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(body, &fresh)
		for _, server := range []*apptest.Running{tani, peer} {
			if code := get(t, server.URL+"/mobile/v1/devices", fresh.AccessToken); code != http.StatusOK {
				t.Errorf("new login's access token on %s = %d, want 200", server.URL, code)
			}
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
		orgOf := func(kind string) string {
			var o struct{ ID string }
			if code, body := post(t, tani.URL+"/admin/v1/organizations", tani.OperatorToken, map[string]string{"name": kind + " " + uuid.NewString()[:8], "kind": kind}); code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
				t.Fatalf("create %s organization: %d %s", kind, code, body)
			}
			return o.ID
		}
		bank, distributor := orgOf("bank"), orgOf("distributor")
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
			{"/admin/v1/agents", map[string]string{"organization_id": bank, "username": "bankagent1", "password": "long enough pass", "name": "A", "region": "Bali"}, 400, "organization_id"},
			{"/admin/v1/agents", map[string]string{"organization_id": distributor, "username": "distagent1", "password": "long enough pass", "name": "A", "region": "Bali"}, 400, "organization_id"},
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
		// 32 bytes that are not a key signatures can be checked under:
		// a point of small order (under the identity anything verifies
		// with crypto/ed25519), and a non-canonical encoding.
		for _, k := range []struct{ name, hex, want string }{
			{"identity", "0100000000000000000000000000000000000000000000000000000000000000", "small order"},
			{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "small order"},
			{"non-canonical (p+1)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "canonical"},
		} {
			b, _ := hex.DecodeString(k.hex)
			code, body := post(t, tani.URL+"/mobile/v1/devices", token, map[string]string{"name": "phone", "public_key": base64.StdEncoding.EncodeToString(b)})
			if code != http.StatusBadRequest || !strings.Contains(string(body), "public_key") || !strings.Contains(string(body), k.want) {
				t.Errorf("enroll %s key = %d %s, want 400 on public_key saying %q", k.name, code, body, k.want)
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
			"scopes": []string{"plots", "harvests"}, "expires_at": time.Now().AddDate(0, 0, 90).UTC().Format(time.RFC3339),
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

// BenchmarkRequireAgent measures what the token-epoch check adds to every
// agent request: the primary-key lookup alone, and a whole authenticated
// request (GET /mobile/v1/devices: the check plus one query) for scale.
func BenchmarkRequireAgent(b *testing.B) {
	tani := apptest.MustStart(b, "-target=mobile-api")
	agent := clienttest.MustAgent(b, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	b.Run("EpochLookup", func(b *testing.B) {
		var epoch int64
		var active bool
		for b.Loop() {
			if err := tani.DB.QueryRow(ctx, `SELECT token_epoch, active FROM mobile.agents WHERE id = $1`, agent.ID).Scan(&epoch, &active); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GET_devices", func(b *testing.B) {
		resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json",
			jsonBody(map[string]string{"username": agent.Username, "password": agent.Password}))
		if err != nil {
			b.Fatal(err)
		}
		var pair struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&pair)
		resp.Body.Close()
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodGet, tani.URL+"/mobile/v1/devices", nil)
			req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
