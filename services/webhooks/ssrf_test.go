package webhooks_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/services/webhooks"
)

// TestDelivery_DNSRebinding: a name that resolved to a public address
// when the endpoint was registered and to a loopback address at delivery
// time is refused at delivery: no connection is made, and the
// organization sees why.
func TestDelivery_DNSRebinding(t *testing.T) {
	rc := newReceiver(t, true, nil)
	cfg := fastRetries()
	cfg.Development = false
	e := mustEnv(t, envOpts{cfg: cfg, resolver: true, rootCAs: rc.roots()})
	e.resolver.set("rebind.bank.example", "93.184.216.34")
	bank, token := e.org(t, identity.Bank)
	u, _ := url.Parse(rc.srv.URL)
	ep := e.subscribe(t, "/bank/v1", token, "https://rebind.bank.example:"+u.Port()+"/hook", events.LoanRepaid)
	e.resolver.set("rebind.bank.example", "127.0.0.1")
	ev := toOrg(bank, events.LoanRepaid, nil)
	e.emit(t, ev)
	var d webhooks.Delivery
	polltest.Eventually(t, 10*time.Second, func() error {
		_, b := e.do(t, http.MethodGet, "/bank/v1/webhooks/"+ep.ID+"/deliveries", token, "")
		ds := mustJSON[struct{ Deliveries []webhooks.Delivery }](t, b).Deliveries
		if len(ds) != 1 || ds[0].Attempts < 2 {
			return fmt.Errorf("deliveries %s", b)
		}
		d = ds[0]
		return nil
	})
	if d.State != "pending" || d.LastError == nil || !strings.Contains(*d.LastError, "refused") || d.ResponseStatus != nil {
		t.Errorf("delivery %+v", d)
	}
	if n := rc.conns.Load(); n != 0 {
		t.Errorf("%d connections reached the loopback receiver", n)
	}
}
