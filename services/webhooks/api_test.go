package webhooks_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/services/webhooks"
)

type apiError struct {
	Error struct {
		Code   string
		Fields []struct{ Field, Message string }
	}
}

func fieldsOf(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for _, f := range mustJSON[apiError](t, b).Error.Fields {
		out = append(out, f.Field)
	}
	return out
}

func (e *env) endpoints(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhooks.endpoints`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEndpoints: the subscription API outside development, with a DNS the
// test controls: every bad input is a 400 naming the field and stores
// nothing; another organization's endpoints do not exist for the caller.
func TestEndpoints(t *testing.T) {
	e := mustEnv(t, envOpts{cfg: webhooks.Config{}, resolver: true, noRun: true})
	e.resolver.set("hooks.bank.example", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
	e.resolver.set("localhost", "127.0.0.1", "::1")
	e.resolver.set("intranet.bank.example", "10.1.2.3")
	e.resolver.set("mixed.bank.example", "93.184.216.34", "192.168.1.10")
	e.resolver.set("metadata.bank.example", "169.254.169.254")
	e.resolver.set("mapped.bank.example", "::ffff:127.0.0.1")
	e.resolver.set("nat64.bank.example", "64:ff9b::a00:1")
	_, bankToken := e.org(t, identity.Bank)
	_, distToken := e.org(t, identity.Distributor)
	_, otherToken := e.org(t, identity.Bank)

	var ep webhooks.Endpoint
	t.Run("OK_Create", func(t *testing.T) {
		code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks", bankToken,
			`{"url":"https://hooks.bank.example/tani","event_types":["loan.repaid","evidence.attested","loan.repaid"],"description":"scoring"}`)
		if code != http.StatusCreated {
			t.Fatalf("%d %s", code, b)
		}
		ep = mustJSON[webhooks.Endpoint](t, b)
		if !ep.Enabled || ep.URL != "https://hooks.bank.example/tani" || !slices.Equal(ep.EventTypes, []string{"evidence.attested", "loan.repaid"}) ||
			!strings.HasPrefix(ep.Secret, "whsec_") || ep.Description != "scoring" {
			t.Errorf("created %s", b)
		}
		code, b = e.do(t, http.MethodGet, "/bank/v1/webhooks", bankToken, "")
		list := mustJSON[struct{ Webhooks []webhooks.Endpoint }](t, b).Webhooks
		if code != http.StatusOK || len(list) != 1 || list[0].ID != ep.ID || list[0].Secret != "" || strings.Contains(string(b), "whsec_") {
			t.Errorf("list %d %s", code, b)
		}
	})

	bad := map[string]struct{ body, field string }{
		"ErrHTTP":              {`{"url":"http://hooks.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrNoScheme":          {`{"url":"hooks.bank.example/x","event_types":["loan.repaid"]}`, "url"},
		"ErrFTP":               {`{"url":"ftp://hooks.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrLoopbackIP":        {`{"url":"https://127.0.0.1/","event_types":["loan.repaid"]}`, "url"},
		"ErrLoopbackIPv6":      {`{"url":"https://[::1]:8443/","event_types":["loan.repaid"]}`, "url"},
		"ErrMappedLoopback":    {`{"url":"https://[::ffff:127.0.0.1]/","event_types":["loan.repaid"]}`, "url"},
		"ErrPrivateIP":         {`{"url":"https://10.0.0.7/","event_types":["loan.repaid"]}`, "url"},
		"ErrPrivate172":        {`{"url":"https://172.20.1.1/","event_types":["loan.repaid"]}`, "url"},
		"ErrCGNAT":             {`{"url":"https://100.64.3.4/","event_types":["loan.repaid"]}`, "url"},
		"ErrLinkLocalMetadata": {`{"url":"https://169.254.169.254/latest/meta-data","event_types":["loan.repaid"]}`, "url"},
		"ErrULA":               {`{"url":"https://[fd00::1]/","event_types":["loan.repaid"]}`, "url"},
		"ErrMulticast":         {`{"url":"https://224.0.0.251/","event_types":["loan.repaid"]}`, "url"},
		"ErrUnspecified":       {`{"url":"https://0.0.0.0/","event_types":["loan.repaid"]}`, "url"},
		"ErrLocalhost":         {`{"url":"https://localhost:8443/","event_types":["loan.repaid"]}`, "url"},
		"ErrNameToPrivate":     {`{"url":"https://intranet.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrNameToMixed":       {`{"url":"https://mixed.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrNameToMetadata":    {`{"url":"https://metadata.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrNameToMapped":      {`{"url":"https://mapped.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrNameToNAT64":       {`{"url":"https://nat64.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrUnresolvable":      {`{"url":"https://nowhere.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrCredentials":       {`{"url":"https://user:pw@hooks.bank.example/","event_types":["loan.repaid"]}`, "url"},
		"ErrFragment":          {`{"url":"https://hooks.bank.example/#x","event_types":["loan.repaid"]}`, "url"},
		"ErrBadPort":           {`{"url":"https://hooks.bank.example:99999/","event_types":["loan.repaid"]}`, "url"},
		"ErrTooLong":           {`{"url":"https://hooks.bank.example/` + strings.Repeat("a", 2100) + `","event_types":["loan.repaid"]}`, "url"},
		"ErrNoURL":             {`{"event_types":["loan.repaid"]}`, "url"},
		"ErrNoTypes":           {`{"url":"https://hooks.bank.example/"}`, "event_types"},
		"ErrEmptyTypes":        {`{"url":"https://hooks.bank.example/","event_types":[]}`, "event_types"},
		"ErrUnknownType":       {`{"url":"https://hooks.bank.example/","event_types":["loan.repaid","loan.eaten"]}`, "event_types[1]"},
		"ErrNotForBanks":       {`{"url":"https://hooks.bank.example/","event_types":["order.placed"]}`, "event_types[0]"},
		"ErrDescription":       {`{"url":"https://hooks.bank.example/","event_types":["loan.repaid"],"description":"` + strings.Repeat("d", 201) + `"}`, "description"},
		"ErrUnknownField":      {`{"url":"https://hooks.bank.example/","event_types":["loan.repaid"],"secret":"whsec_mine"}`, "secret"},
		"ErrTypesNotAList":     {`{"url":"https://hooks.bank.example/","event_types":"loan.repaid"}`, "event_types"},
		"ErrMalformed":         {`{"url":`, "body"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			before := e.endpoints(t)
			code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks", bankToken, tc.body)
			if code != http.StatusBadRequest || !slices.Contains(fieldsOf(t, b), tc.field) {
				t.Errorf("got %d %s, want 400 naming %s", code, b, tc.field)
			}
			if after := e.endpoints(t); after != before {
				t.Errorf("%d endpoints stored by a refused request", after-before)
			}
		})
	}

	t.Run("ErrAnotherOrganizationsEndpoint", func(t *testing.T) {
		for _, r := range []struct{ method, path, body string }{
			{http.MethodGet, "", ""},
			{http.MethodPatch, "", `{"enabled":false}`},
			{http.MethodDelete, "", ""},
			{http.MethodPost, "/rotate-secret", ""},
			{http.MethodGet, "/deliveries", ""},
			{http.MethodGet, "/deliveries/1", ""},
			{http.MethodPost, "/replay?since=2020-01-01T00:00:00Z", ""},
		} {
			code, b := e.do(t, r.method, "/bank/v1/webhooks/"+ep.ID+r.path, otherToken, r.body)
			if code != http.StatusNotFound {
				t.Errorf("%s %s by another bank: %d %s, want 404", r.method, r.path, code, b)
			}
		}
		code, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID, bankToken, "")
		if g := mustJSON[webhooks.Endpoint](t, b); code != http.StatusOK || !g.Enabled {
			t.Errorf("the owner's endpoint changed: %s", b)
		}
		code, b = e.do(t, http.MethodGet, "/distributor/v1/webhooks/"+ep.ID, distToken, "")
		if code != http.StatusNotFound {
			t.Errorf("a distributor reads a bank's endpoint: %d %s", code, b)
		}
		code, _ = e.do(t, http.MethodGet, "/distributor/v1/webhooks", bankToken, "")
		if code != http.StatusForbidden {
			t.Errorf("a bank key on the distributor API: %d, want 403", code)
		}
	})
	t.Run("ErrBadID", func(t *testing.T) {
		code, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+strings.ToUpper(ep.ID), bankToken, "")
		if code != http.StatusBadRequest || !slices.Contains(fieldsOf(t, b), "id") {
			t.Errorf("%d %s", code, b)
		}
	})
	t.Run("OK_Update", func(t *testing.T) {
		code, b := e.do(t, http.MethodPatch, "/bank/v1/webhooks/"+ep.ID, bankToken, `{"enabled":false,"event_types":["consent.revoked"]}`)
		g := mustJSON[webhooks.Endpoint](t, b)
		if code != http.StatusOK || g.Enabled || g.DisabledReason == nil || *g.DisabledReason != "organization" || !slices.Equal(g.EventTypes, []string{"consent.revoked"}) || g.URL != ep.URL {
			t.Errorf("%d %s", code, b)
		}
		for _, body := range []string{`{"url":"https://intranet.bank.example/"}`, `{"event_types":["order.placed"]}`, `{"url":"http://hooks.bank.example/"}`} {
			code, b = e.do(t, http.MethodPatch, "/bank/v1/webhooks/"+ep.ID, bankToken, body)
			if code != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", body, code, b)
			}
		}
		_, b = e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID, bankToken, "")
		if g := mustJSON[webhooks.Endpoint](t, b); g.URL != ep.URL || !slices.Equal(g.EventTypes, []string{"consent.revoked"}) {
			t.Errorf("a refused update changed the endpoint: %s", b)
		}
	})
	t.Run("ErrRotateOverlap", func(t *testing.T) {
		for _, body := range []string{`{"overlap_seconds":-1}`, `{"overlap_seconds":604801}`, `{"overlap":"1h"}`} {
			code, b := e.do(t, http.MethodPost, "/bank/v1/webhooks/"+ep.ID+"/rotate-secret", bankToken, body)
			if code != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", body, code, b)
			}
		}
	})
	t.Run("ErrConflict_TooManyEndpoints", func(t *testing.T) {
		_, tok := e.org(t, identity.Distributor)
		for i := range 20 {
			code, b := e.do(t, http.MethodPost, "/distributor/v1/webhooks", tok, fmt.Sprintf(`{"url":"https://hooks.bank.example/%d","event_types":["order.placed"]}`, i))
			if code != http.StatusCreated {
				t.Fatalf("%d: %d %s", i, code, b)
			}
		}
		code, b := e.do(t, http.MethodPost, "/distributor/v1/webhooks", tok, `{"url":"https://hooks.bank.example/21","event_types":["order.placed"]}`)
		if code != http.StatusConflict {
			t.Errorf("21st endpoint: %d %s, want 409", code, b)
		}
	})
	t.Run("OK_EventTypes", func(t *testing.T) {
		_, b := e.do(t, http.MethodGet, "/distributor/v1/webhooks/event-types", distToken, "")
		var types []string
		for _, et := range mustJSON[struct {
			EventTypes []webhooks.EventType `json:"event_types"`
		}](t, b).EventTypes {
			types = append(types, et.Type)
		}
		want := []string{}
		for _, ty := range events.TypesFor(identity.Distributor) {
			want = append(want, string(ty))
		}
		if !slices.Equal(types, want) || slices.Contains(types, "loan.applied") || !slices.Contains(types, "order.placed") {
			t.Errorf("distributor's event types %v", types)
		}
	})
	t.Run("OK_Delete", func(t *testing.T) {
		code, b := e.do(t, http.MethodDelete, "/bank/v1/webhooks/"+ep.ID, bankToken, "")
		if code != http.StatusNoContent {
			t.Fatalf("%d %s", code, b)
		}
		if code, _ := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID, bankToken, ""); code != http.StatusNotFound {
			t.Errorf("deleted endpoint answers %d", code)
		}
		if code, _ := e.do(t, http.MethodDelete, "/bank/v1/webhooks/"+uuid.NewString(), bankToken, ""); code != http.StatusNotFound {
			t.Errorf("deleting an unknown endpoint answers %d", code)
		}
	})
}
