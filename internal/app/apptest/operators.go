package apptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// MustOperatorUser creates, with the bootstrap operator token, a named
// user of the operator organization with role (operator or reviewer)
// and signs it in, returning its bearer token for /admin/v1 and its user
// id. Review decisions need one: they are journaled under a real person.
func (r *Running) MustOperatorUser(tb testing.TB, role string) (token, userID string) {
	tb.Helper()
	var org struct {
		ID string `json:"id"`
	}
	r.mustAdminJSON(tb, r.OperatorToken, "/admin/v1/organizations", map[string]string{"name": "Tani operations " + uuid.NewString()[:8], "kind": "operator"}, http.StatusCreated, &org)
	username := role + "-" + uuid.NewString()[:8]
	const password = "apptest operator password"
	var user struct {
		ID string `json:"id"`
	}
	r.mustAdminJSON(tb, r.OperatorToken, "/admin/v1/organizations/"+org.ID+"/users",
		map[string]string{"username": username, "name": "Test " + role, "role": role, "password": password}, http.StatusCreated, &user)
	var signed struct {
		Token string `json:"token"`
	}
	r.mustAdminJSON(tb, "", "/admin/v1/auth/login", map[string]string{"username": username, "password": password}, http.StatusOK, &signed)
	return signed.Token, user.ID
}

// mustAdminJSON posts body as JSON with the bearer token (none when
// empty), requires status want and decodes the answer into out.
func (r *Running) mustAdminJSON(tb testing.TB, token, path string, body any, want int, out any) {
	tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, r.URL+path, bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("POST %s: got %d %s, want %d", path, resp.StatusCode, data, want)
	}
	if err := json.Unmarshal(data, out); err != nil {
		tb.Fatal(fmt.Errorf("POST %s: decode %s: %w", path, data, err))
	}
}
