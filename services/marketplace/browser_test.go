package marketplace_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/vouchers"
	"github.com/tani-platform/tani/services/marketplace"
)

// The portal is tested in a real browser: Debian's chromium, headless,
// driven over the DevTools protocol by chromedp (pure Go, from the module
// proxy, so the test needs no Node runtime and no browser download).

// mustBrowser starts a headless chromium with a fresh profile, or skips
// the test when there is none (fails under CI).
func mustBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/setup.sh installs it)")
		}
		t.Skip("chromium is not installed: run scripts/setup.sh")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifacts is where screenshots go: $TANI_TEST_ARTIFACTS/<test>, else a
// temporary directory of the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("TANI_TEST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that reads a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// count is the number of elements matching a CSS selector.
func count(t *testing.T, ctx context.Context, css string) int {
	t.Helper()
	return get(t, ctx, "count "+css, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", css)))
}

// try runs a read that may meet a page still navigating (a node or an
// execution context gone): inside polls, its error is retried, not fatal.
func try[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(tctx, a)
}

// showing reports whether the page shows exactly one element matching css.
func showing(ctx context.Context, css string) error {
	n, err := try(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", css)))
	if err == nil && n != 1 {
		err = fmt.Errorf("%d elements match %s, want 1", n, css)
	}
	return err
}

// waitStatus waits until the order page the browser went to shows the
// order in status want (a click's form post redirects there).
func waitStatus(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	polltest.Eventually(t, 10*time.Second, func() error {
		got, err := try(ctx, chromedp.Evaluate[string](`(document.getElementById('order-status') || {}).textContent || ''`))
		if err == nil && got != want {
			err = fmt.Errorf("order status %q, want %q", got, want)
		}
		return err
	})
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// TestBrowser_DistributorDay is a distributor's day in the portal: sign in,
// add a product (its name carrying markup, shown as text), see the order
// an agent's phone placed arrive, accept it and mark it shipped, see the
// delivery the phone proved, and the demand chart and map render. A form
// posted without the session's CSRF token is refused.
func TestBrowser_DistributorDay(t *testing.T) {
	// No outlook computed at start: the test refreshes it once it seeded
	// the plots (a refresh less than a minute after the last one answers
	// that one).
	s := mustScenario(t, "-marketplace.demand-interval=0")
	ctx := mustBrowser(t)
	shots := artifacts(t)
	base := s.tani.URL + "/portal"

	// Demand: twelve farmers' verified rice plots in the district.
	planted := time.Now().UTC().AddDate(-1, 1, 0)
	for i := range 12 {
		verifiedPlot(t, s.tani.DB, uuid.NewString(), "Central Java", 0.5+float64(i)*0.1, 110.40+float64(i)*0.002, -7.25, "rice", planted)
	}
	var run0 marketplace.Run
	if code := s.d.call(t, s.tani, "POST", "/distributor/v1/demand/refresh", nil, &run0); code != 200 {
		t.Fatalf("refresh demand: %d", code)
	}

	run(t, ctx, "sign in",
		chromedp.Navigate(base+"/catalog"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), s.d.username),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), s.d.password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`#add-product`)),
	)
	screenshot(t, ctx, shots, "1-catalog-empty")

	name := `<script>alert("x")</script> Urea & "NPK"`
	run(t, ctx, "add a product",
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=sku]`), "UREA-50"),
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=name]`), name),
		chromedp.SetValue(chromedp.CSS(`#add-product select[name=category]`), "fertilizer"),
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=pack_size]`), "50"),
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=price]`), "112500"),
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=regions]`), "Central Java"),
		chromedp.SetValue(chromedp.CSS(`#add-product input[name=stock]`), "20"),
		chromedp.Submit(chromedp.CSS(`#add-product input[name=sku]`)),
		chromedp.WaitVisible(chromedp.CSS(`#products td.pname`)),
	)
	shown := get(t, ctx, "read the product back", chromedp.Text(chromedp.CSS(`#products td.pname`)))
	if scripts := count(t, ctx, "script"); shown != name || scripts != 0 {
		t.Errorf("product name shown as %q with %d script elements, want the text %q and none", shown, scripts, name)
	}
	// The CSP allows no inline style, so the page's looks come from the
	// stylesheet alone: the pack size field is as narrow as it says (5rem).
	if w := get(t, ctx, "pack size width", chromedp.Evaluate[float64](`document.querySelector('#add-product input[name=pack_size]').getBoundingClientRect().width`)); w < 70 || w > 100 {
		t.Errorf("pack size field %v px wide, want ~80 (5rem from the stylesheet)", w)
	}
	screenshot(t, ctx, shots, "2-catalog-product")

	var page struct{ Items []marketplace.Product }
	if code := s.d.call(t, s.tani, "GET", "/distributor/v1/products", nil, &page); code != 200 || len(page.Items) != 1 || page.Items[0].UnitPrice.Amount != 11250000 {
		t.Fatalf("products = %d %+v", code, page)
	}
	urea := page.Items[0]

	// The farmer's bank issued an input voucher on the chain; the agent's
	// phone places the order, paid with it.
	voucher := uuid.NewString()
	if _, err := s.tani.App.Vouchers().Issue(context.Background(), "BankMSP", vouchers.IssueRequest{ID: voucher, FarmerID: s.farmer, LoanID: uuid.NewString(),
		Amount: vouchers.Money{Minor: 50_000_000, Currency: "IDR"}, Categories: []string{"fertilizer"}, DistributorOrgs: []string{s.d.org},
		ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatalf("issue voucher: %v", err)
	}
	orderID := uuid.NewString()
	s.decided(s.sync(record.TypeOrderPlaced, s.orderPayload(orderID, "voucher", voucher, urea)), "verified")
	row := fmt.Sprintf(`tr[data-order="%s"]`, orderID)
	polltest.Eventually(t, 20*time.Second, func() error {
		if _, err := try(ctx, chromedp.Navigate(base+"/orders")); err != nil {
			return err
		}
		return showing(ctx, row)
	})
	screenshot(t, ctx, shots, "3-order-arrived")

	t.Run("ErrFormWithoutCSRF", func(t *testing.T) {
		// The browser's own session cookie, on a form post that lacks the
		// token (what a cross-site form would send).
		cookies := get(t, ctx, "cookies", chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
			res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
			return res.Cookies, err
		}))
		req, _ := http.NewRequest("POST", base+"/orders/"+orderID+"/reject", strings.NewReader("reason=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("form without CSRF token answered %d, want 403", resp.StatusCode)
		}
		var o marketplace.Order
		if s.d.call(t, s.tani, "GET", "/distributor/v1/orders/"+orderID, nil, &o); o.Status != "placed" {
			t.Errorf("order is %s after a refused form, want placed", o.Status)
		}
	})

	run(t, ctx, "accept", chromedp.Click(chromedp.CSS(row+` button[name=accept]`)))
	waitStatus(t, ctx, "accepted")
	run(t, ctx, "ship", chromedp.Click(chromedp.CSS(`button[name=ship]`)))
	waitStatus(t, ctx, "shipped")
	screenshot(t, ctx, shots, "4-order-shipped")

	// The farmer receives the goods; the phone proves it.
	del := s.sync(record.TypeDeliveryConfirmed, s.deliveryPayload(orderID, map[string]any{"product_id": urea.ID, "quantity": 2}))
	s.decided(del, "verified")
	drow := fmt.Sprintf(`tr[data-delivery="%s"]`, del)
	polltest.Eventually(t, 20*time.Second, func() error {
		if _, err := try(ctx, chromedp.Navigate(base+"/deliveries")); err != nil {
			return err
		}
		return showing(ctx, drow)
	})
	screenshot(t, ctx, shots, "5-delivery-confirmed")
	run(t, ctx, "order delivered", chromedp.Navigate(base+"/orders/"+orderID))
	waitStatus(t, ctx, "delivered")

	run(t, ctx, "demand", chromedp.Navigate(base+"/demand"), chromedp.WaitVisible(chromedp.CSS(`#demand-chart`)))
	bars, points := count(t, ctx, "#demand-chart rect[height]"), count(t, ctx, "#district-map circle")
	if bars < 2 || points != 1 {
		t.Errorf("demand chart has %d bars and the map %d districts, want bars and 1 district", bars, points)
	}
	screenshot(t, ctx, shots, "6-demand")
	vrow := fmt.Sprintf(`tr[data-voucher="%s"] .s-redeemed`, voucher)
	polltest.Eventually(t, 20*time.Second, func() error {
		if _, err := try(ctx, chromedp.Navigate(base+"/vouchers")); err != nil {
			return err
		}
		return showing(ctx, vrow)
	})
	screenshot(t, ctx, shots, "7-voucher-redeemed")
	if _, err := s.tani.App.Vouchers().Settle(context.Background(), "BankMSP", voucher, "BANK-PAY-0001"); err != nil {
		t.Fatalf("settle: %v", err)
	}
	polltest.Eventually(t, 20*time.Second, func() error {
		if _, err := try(ctx, chromedp.Navigate(base+"/settlements")); err != nil {
			return err
		}
		got, err := try(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('#settlements td')).map(td => td.textContent).join('|')`))
		if err == nil && !strings.HasPrefix(got, "IDR|IDR 225,000.00|1|IDR 225,000.00|1|IDR 0.00") {
			err = fmt.Errorf("settlements row %q", got)
		}
		return err
	})
	screenshot(t, ctx, shots, "8-settlements")
}
