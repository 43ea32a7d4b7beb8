package mobileapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

func syncDown(t *testing.T, tani *apptest.Running, a *clienttest.Agent, cursor string, limit int) (int, mobileapi.FarmersPage) {
	t.Helper()
	url := tani.URL + "/mobile/v1/farmers?cursor=" + cursor
	if limit > 0 {
		url += "&limit=" + strconv.Itoa(limit)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken(t, tani, a))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page mobileapi.FarmersPage
	json.NewDecoder(resp.Body).Decode(&page)
	return resp.StatusCode, page
}

func accessToken(t *testing.T, tani *apptest.Running, a *clienttest.Agent) string {
	t.Helper()
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	resp, err := http.Post(tani.URL+"/mobile/v1/auth/login", "application/json",
		jsonBody(map[string]string{"username": a.Username, "password": a.Password}))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&pair)
	return pair.AccessToken
}

func TestFarmersSyncDown(t *testing.T) {
	tani := apptest.MustStart(t)
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	other := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()

	// Three farmers with a plot each for agent, one for other.
	var mine []string
	var lastRecord string
	for range 3 {
		farmer, plot := uuid.NewString(), uuid.NewString()
		reg, _ := signed(t, agent, "farmer.registered", farmer, plot)
		pl, id := signed(t, agent, "plot.mapped", farmer, plot)
		mustSync(t, agent, reg, pl)
		mine, lastRecord = append(mine, farmer), id
	}
	theirs := registered(t, other)
	// Let attest settle: a transaction of its own still running when the
	// cursor is taken would (correctly) make changes come down twice.
	waitStatus(t, agent, lastRecord, "decided")

	t.Run("OK_PagesThenCursorShowsOnlyChanges", func(t *testing.T) {
		got := map[string]int{}
		cursor := ""
		for pages := 0; ; pages++ {
			code, page := syncDown(t, tani, agent, cursor, 2)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			for _, f := range page.Farmers {
				got[f.FarmerID] = len(f.Plots)
			}
			cursor = page.Cursor
			if !page.More {
				break
			}
			if pages > 5 {
				t.Fatal("paging does not end")
			}
		}
		for _, f := range mine {
			if got[f] != 1 {
				t.Errorf("farmer %s: %d plots synced down, want 1", f, got[f])
			}
		}
		if _, ok := got[theirs]; ok {
			t.Error("another agent's farmer was synced down")
		}
		// Nothing changed: the cursor yields nothing.
		if _, page := syncDown(t, tani, agent, cursor, 0); len(page.Farmers) != 0 {
			t.Errorf("unchanged data synced down again: %d farmers", len(page.Farmers))
		}
		// A newly assigned (old) farmer and a changed plot both come down.
		if err := client.NewAdmin(tani.URL, tani.OperatorToken).Assign(ctx, theirs, agent.ID); err != nil {
			t.Fatal(err)
		}
		moved := clienttest.Payloads(mine[0], uuid.NewString(), time.Now())["plot.mapped"]
		raw, id, _ := agent.Record("plot.mapped", time.Now(), loc, moved)
		mustSync(t, agent, raw)
		waitStatus(t, agent, id, "ingested")
		_, page := syncDown(t, tani, agent, cursor, 0)
		ids := map[string]bool{}
		for _, f := range page.Farmers {
			ids[f.FarmerID] = true
		}
		if !ids[theirs] || !ids[mine[0]] || len(ids) != 2 {
			t.Errorf("after changes synced down %v, want exactly %s (assigned) and %s (new plot)", ids, theirs, mine[0])
		}
	})

	t.Run("ErrBadCursor", func(t *testing.T) {
		if code, _ := syncDown(t, tani, agent, "bm90LWEtY3Vyc29y", 0); code != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", code)
		}
	})
	t.Run("ErrBadLimit", func(t *testing.T) {
		if code, _ := syncDown(t, tani, agent, "", 5000); code != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", code)
		}
	})
}
