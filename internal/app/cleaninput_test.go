package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestCleanInput_ControlBytesAre400s: a NUL or another control character
// anywhere a client can put one — a JSON field, a path, a path parameter,
// a query — is answered 400 naming where it was, by every module, never
// 500 (Postgres refuses NULs in text) and never stored.
func TestCleanInput_ControlBytesAre400s(t *testing.T) {
	tani := apptest.MustStart(t)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json",
		strings.NewReader(`{"username":"`+agent.Username+`","password":"`+agent.Password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()

	tests := []struct {
		name, method, path, token, body, field string
	}{
		{"LoginUsername", "POST", "/mobile/v1/auth/login", "", `{"username":"admin\u0000","password":"whatever password"}`, "username"},
		{"LoginPassword", "POST", "/mobile/v1/auth/login", "", `{"username":"admin","password":"pass\u0000word"}`, "password"},
		{"RefreshToken", "POST", "/mobile/v1/auth/refresh", "", `{"refresh_token":"\u0000"}`, "refresh_token"},
		{"LedgerReceiptPath", "GET", "/ledger/v1/records/%00/receipt", "", "", "path"},
		{"LedgerHistoryPath", "GET", "/ledger/v1/records/%00/history", "", "", "path"},
		{"LedgerHistoryQuery", "GET", "/ledger/v1/records/x/history?at=%00", "", "", "at"},
		{"RecordStatusPath", "GET", "/mobile/v1/records/%00", "agent", "", "path"},
		{"SyncDownCursor", "GET", "/mobile/v1/farmers?cursor=%00", "agent", "", "cursor"},
		{"DeviceName", "POST", "/mobile/v1/devices", "agent", `{"name":"phone\u001b[2J","public_key":"AAAA"}`, "name"},
		{"AgentNameANSI", "POST", "/admin/v1/agents", "operator", `{"organization_id":"` + agent.OrgID + `","username":"agentx1","password":"long enough pass","name":"\u001b[31mEvil","region":"Bali"}`, "name"},
		{"OrganizationName", "POST", "/admin/v1/organizations", "operator", `{"name":"Bank\u0000","kind":"bank"}`, "name"},
		{"RevokeReason", "POST", "/admin/v1/devices/" + agent.DeviceID + "/revoke", "operator", `{"reason":"lost\u0000"}`, "reason"},
		{"RefusalsQuery", "GET", "/admin/v1/refusals?stage=%00", "operator", "", "stage"},
		{"DeadLettersQuery", "GET", "/admin/v1/deadletters?after=%00", "operator", "", "after"},
		{"ReviewPath", "POST", "/admin/v1/reviews/%00/approve", "operator", `{"reviewer":"Bu Rina","reason":"ok"}`, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tani.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			switch tt.token {
			case "agent":
				req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
			case "operator":
				req.Header.Set("Authorization", "Bearer "+tani.OperatorToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var e httpserver.ErrorBody
			json.Unmarshal(raw, &e)
			if resp.StatusCode != http.StatusBadRequest || len(e.Error.Fields) == 0 || e.Error.Fields[0].Field != tt.field {
				t.Errorf("%s %s = %d %s, want 400 naming %q", tt.method, tt.path, resp.StatusCode, raw, tt.field)
			}
		})
	}
	var n int
	if err := tani.DB.QueryRow(t.Context(), `SELECT count(*) FROM mobile.agents WHERE username = 'agentx1'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("agents stored from refused input: %d (%v)", n, err)
	}
}
