package marketplace

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/validate"
)

// The portal: server-rendered pages for distributors' people, every
// asset embedded (one small stylesheet; charts and the map are inline SVG
// drawn on the server), no script, nothing from another site. Every value
// is escaped by html/template; every form carries the session's CSRF
// token, which the session middleware checks on every unsafe request.

//go:embed portal/templates/*.html
var templatesFS embed.FS

//go:embed portal/static
var staticFS embed.FS

// PortalBase is where the portal is mounted.
const PortalBase = "/portal"

// PortalAuth is what the portal needs of the identity module's sessions.
type PortalAuth struct {
	// Require guards every page: an unauthenticated browser is sent to
	// sign in; the middleware records the identity.Principal and checks
	// the CSRF token of every unsafe request.
	Require echo.MiddlewareFunc
	// CSRFToken is the token forms carry (field csrf_token).
	CSRFToken func(c echo.Context) string
	// SignOutPath is where the sign-out form posts ("" hides it).
	SignOutPath string
	// Mount, when set, mounts the sign-in and sign-out pages on the
	// portal's group (unauthenticated).
	Mount func(g *echo.Group)
}

type pages struct{ t map[string]*template.Template }

var funcs = template.FuncMap{
	"money":  func(m Money) string { return formatMoney(m.Amount, m.Currency) },
	"moneyc": formatMoney,
	"major":  func(m Money) string { return majorUnits(m.Amount, m.Currency) },
	"num":    func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
	"join":   func(s []string) string { return strings.Join(s, ", ") },
	"date":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
	"short": func(s string) string {
		if len(s) > 8 {
			return s[:8]
		}
		return s
	},
	"deref": func(p *int64) int64 { return *p },
	"pct":   func(p *float64) string { return fmt.Sprintf("%.1f %%", *p*100) },
	"pair":  func(a, b any) map[string]any { return map[string]any{"A": a, "B": b} },
	"text":  func(p *string) string { return *p },
	"code":  func(p *int) int { return *p },
	"at": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
}

func loadPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range []string{"catalog", "orders", "order", "deliveries", "vouchers", "settlements", "demand", "webhooks", "webhook", "webhooksecret"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templatesFS, "portal/templates/layout.html", "portal/templates/actions.html", "portal/templates/webhookparts.html", "portal/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal template %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// zeroDecimal are ISO 4217 currencies without minor units in practice.
var zeroDecimal = map[string]bool{"JPY": true, "KRW": true, "VND": true, "UGX": true, "RWF": true, "XOF": true, "XAF": true, "CLP": true, "PYG": true}

func decimals(currency string) int {
	if zeroDecimal[currency] {
		return 0
	}
	return 2
}

// majorUnits writes minor units as a decimal in major units.
func majorUnits(minor int64, currency string) string {
	d := decimals(currency)
	if d == 0 {
		return strconv.FormatInt(minor, 10)
	}
	neg := minor < 0
	if neg {
		minor = -minor
	}
	s := fmt.Sprintf("%d.%02d", minor/100, minor%100)
	if neg {
		s = "-" + s
	}
	return s
}

func formatMoney(minor int64, currency string) string {
	s := majorUnits(minor, currency)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 && r != '-' && intPart[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return currency + " " + b.String()
}

// parseMajor reads a price typed in major units ("75000", "75,000.50").
func parseMajor(s, currency string) (int64, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ",", "")
	if s == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	v := math.Round(f * math.Pow10(decimals(currency)))
	if v < 1 || v > 9007199254740991 {
		return 0, false
	}
	return int64(v), true
}

type navItem struct{ Name, Path string }

var nav = []navItem{{"Orders", "/orders"}, {"Catalog", "/catalog"}, {"Vouchers", "/vouchers"}, {"Deliveries", "/deliveries"}, {"Settlements", "/settlements"}, {"Demand", "/demand"}}

// webhooksNav is shown when the webhooks module runs beside the portal.
var webhooksNav = navItem{"Webhooks", "/webhooks"}

// view is what every page template gets.
type view struct {
	Title, Base, Active, Who, CSRF, SignOut, Flash, ErrorMessage string
	Nav                                                          []navItem
	Errors                                                       []apperr.FieldError
	Data                                                         any
}

func (s *Service) render(c echo.Context, status int, page, title string, data any, problem error) error {
	p, _ := identity.PrincipalOf(c)
	v := view{Title: title, Base: PortalBase, Active: "/" + strings.SplitN(page, "/", 2)[0], Nav: nav, Data: data,
		CSRF: s.portal.CSRFToken(c), SignOut: s.portal.SignOutPath, Flash: c.QueryParam("done")}
	if s.webhooks != nil {
		v.Nav = append(slices.Clip(nav), webhooksNav)
	}
	switch v.Active {
	case "/order":
		v.Active = "/orders"
	case "/webhook", "/webhooksecret":
		v.Active = "/webhooks"
	}
	v.Who = p.Role + " · organization " + shortID(p.OrganizationID)
	if problem != nil {
		e, ok := apperr.As(problem)
		if !ok || e.Code == apperr.Internal {
			return problem
		}
		v.ErrorMessage, v.Errors = e.Message, e.Fields
		status = httpStatus(e.Code)
	}
	var b bytes.Buffer
	if err := s.pages.t[page].ExecuteTemplate(&b, "layout", v); err != nil {
		return fmt.Errorf("render %s: %w", page, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	return c.HTMLBlob(status, b.Bytes())
}

func httpStatus(code apperr.Code) int {
	switch code {
	case apperr.NotFound:
		return http.StatusNotFound
	case apperr.Conflict:
		return http.StatusConflict
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.Unauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func (s *Service) portalRoutes(g *echo.Group) {
	static, _ := fs.Sub(staticFS, "portal/static")
	g.GET("/static/*", echo.WrapHandler(http.StripPrefix(PortalBase+"/static/", cacheForever(http.FileServer(http.FS(static))))))
	if s.portal.Mount != nil {
		s.portal.Mount(g)
	}
	// Route-level guards: a Group("", mw) would also run mw for every
	// unknown path under /portal.
	guard := s.portal.Require
	home := func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, PortalBase+"/orders") }
	g.GET("", home, guard)
	g.GET("/", home, guard)
	g.GET("/catalog", s.pageCatalog, guard)
	g.POST("/catalog", s.pageAddProduct, guard)
	g.POST("/catalog/:id", s.pageUpdateProduct, guard)
	g.GET("/orders", s.pageOrders, guard)
	g.GET("/orders/:id", s.pageOrder, guard)
	g.POST("/orders/:id/accept", s.pageAct(Accept), guard)
	g.POST("/orders/:id/reject", s.pageAct(Reject), guard)
	g.POST("/orders/:id/cancel", s.pageAct(Cancel), guard)
	g.POST("/orders/:id/ship", s.pageAct(Ship), guard)
	g.GET("/deliveries", s.pageDeliveries, guard)
	g.GET("/vouchers", s.pageVouchers, guard)
	g.GET("/settlements", s.pageSettlements, guard)
	g.GET("/demand", s.pageDemand, guard)
	if s.webhooks != nil {
		s.webhookRoutes(g, guard)
	}
}

func cacheForever(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		h.ServeHTTP(w, r)
	})
}

type catalogData struct {
	Page           Page[Product]
	Categories     []string
	Crops          []string
	Category, Crop string
	NextQuery      string
	Form           map[string]string
}

func (s *Service) catalogData(c echo.Context, form map[string]string) (catalogData, error) {
	p, err := principal(c)
	if err != nil {
		return catalogData{}, err
	}
	f := ProductFilter{Category: c.QueryParam("category"), Crop: c.QueryParam("crop"), Cursor: c.QueryParam("cursor")}
	page, err := s.Products(c.Request().Context(), p.OrganizationID, f)
	if err != nil {
		return catalogData{}, err
	}
	q := url.Values{"cursor": {page.Next}}
	if f.Category != "" {
		q.Set("category", f.Category)
	}
	if f.Crop != "" {
		q.Set("crop", f.Crop)
	}
	if form == nil {
		form = map[string]string{}
	}
	return catalogData{Page: page, Categories: Categories, Crops: validate.Crops, Category: f.Category, Crop: f.Crop, NextQuery: q.Encode(), Form: form}, nil
}

func (s *Service) pageCatalog(c echo.Context) error {
	d, err := s.catalogData(c, nil)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "catalog", "Catalog", d, nil)
}

func (s *Service) pageAddProduct(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	form := map[string]string{}
	for _, k := range []string{"sku", "name", "category", "crop", "pack_size", "pack_unit", "price", "currency", "regions", "stock"} {
		form[k] = c.FormValue(k)
	}
	in := ProductInput{SKU: strings.TrimSpace(form["sku"]), Name: strings.TrimSpace(form["name"]), Category: form["category"], Crop: form["crop"],
		PackUnit: form["pack_unit"], UnitPrice: Money{Currency: strings.ToUpper(strings.TrimSpace(form["currency"]))}}
	var fields []apperr.FieldError
	if v, err := strconv.ParseFloat(strings.TrimSpace(form["pack_size"]), 64); err == nil && !math.IsNaN(v) {
		in.PackSize = v
	} else {
		fields = append(fields, apperr.FieldError{Field: "pack_size", Message: "must be a number"})
	}
	if v, ok := parseMajor(form["price"], in.UnitPrice.Currency); ok {
		in.UnitPrice.Amount = v
	} else {
		fields = append(fields, apperr.FieldError{Field: "price", Message: "must be a positive amount"})
	}
	if v, err := strconv.ParseInt(strings.TrimSpace(form["stock"]), 10, 64); err == nil {
		in.Stock = v
	} else {
		fields = append(fields, apperr.FieldError{Field: "stock", Message: "must be a whole number of packs"})
	}
	for _, r := range strings.Split(form["regions"], ",") {
		if r = strings.TrimSpace(r); r != "" {
			in.Regions = append(in.Regions, r)
		}
	}
	var perr error
	if len(fields) > 0 {
		perr = apperr.Fields("the product was not added", fields...)
	} else if _, perr = s.CreateProduct(c.Request().Context(), p.OrganizationID, in); perr == nil {
		return c.Redirect(http.StatusSeeOther, PortalBase+"/catalog?done="+url.QueryEscape("Added "+in.Name))
	}
	if e, ok := apperr.As(perr); ok && e.Code != apperr.Internal && e.Message == "" {
		e.Message = "the product was not added"
	}
	d, err := s.catalogData(c, form)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusBadRequest, "catalog", "Catalog", d, perr)
}

func (s *Service) pageUpdateProduct(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	cur, err := s.Product(ctx, p.OrganizationID, c.Param("id"))
	if err != nil {
		return s.pageError(c, err)
	}
	var patch ProductPatch
	var fields []apperr.FieldError
	if v := c.FormValue("stock"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			fields = append(fields, apperr.FieldError{Field: "stock", Message: "must be a whole number of packs"})
		}
		patch.Stock = &n
	}
	if v := c.FormValue("price"); v != "" {
		amount, ok := parseMajor(v, cur.UnitPrice.Currency)
		if !ok {
			fields = append(fields, apperr.FieldError{Field: "price", Message: "must be a positive amount"})
		}
		patch.UnitPrice = &Money{Amount: amount, Currency: cur.UnitPrice.Currency}
	}
	switch v := c.FormValue("active"); v {
	case "true", "false":
		b := v == "true"
		patch.Active = &b
	case "":
	default:
		fields = append(fields, apperr.FieldError{Field: "active", Message: "must be true or false"})
	}
	var perr error
	if len(fields) > 0 {
		perr = apperr.Fields("the product was not changed", fields...)
	} else if _, perr = s.UpdateProduct(ctx, p.OrganizationID, cur.ID, patch); perr == nil {
		return c.Redirect(http.StatusSeeOther, PortalBase+"/catalog?done="+url.QueryEscape("Saved "+cur.Name))
	}
	d, err := s.catalogData(c, nil)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusBadRequest, "catalog", "Catalog", d, perr)
}

// pageError renders a domain error on the orders page.
func (s *Service) pageError(c echo.Context, perr error) error {
	if e, ok := apperr.As(perr); !ok || e.Code == apperr.Internal {
		return perr
	}
	d, err := s.ordersData(c)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusBadRequest, "orders", "Orders", d, perr)
}

type ordersData struct {
	Page      Page[Order]
	Statuses  []string
	NextQuery string
}

func (s *Service) ordersData(c echo.Context) (ordersData, error) {
	p, err := principal(c)
	if err != nil {
		return ordersData{}, err
	}
	status := c.QueryParam("status")
	page, err := s.Orders(c.Request().Context(), p.OrganizationID, OrderFilter{Status: status, Cursor: c.QueryParam("cursor")})
	if err != nil {
		return ordersData{}, err
	}
	q := url.Values{"cursor": {page.Next}}
	if status != "" {
		q.Set("status", status)
	}
	return ordersData{Page: page, Statuses: []string{"", StatusPlaced, StatusAccepted, StatusShipped, StatusDelivered, StatusRejected, StatusCancelled}, NextQuery: q.Encode()}, nil
}

func (s *Service) pageOrders(c echo.Context) error {
	d, err := s.ordersData(c)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "orders", "Orders", d, nil)
}

type orderData struct {
	Order    Order
	Receipts []OrderReceipt
}

func (s *Service) pageOrder(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	o, err := s.Order(ctx, p.OrganizationID, c.Param("id"))
	if err != nil {
		return s.pageError(c, err)
	}
	rs, err := s.revisionsOf(ctx, o.ID)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "order", "Order", orderData{Order: o, Receipts: rs}, nil)
}

// revisionsOf lists an order's journal revisions without building
// receipts (the API serves those).
func (s *Service) revisionsOf(ctx context.Context, id string) ([]OrderReceipt, error) {
	rows, err := s.pool.Query(ctx, `SELECT revision, kind, leaf_index FROM marketplace.order_revisions WHERE order_id = $1 ORDER BY revision`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OrderReceipt
	for rows.Next() {
		var r OrderReceipt
		if err := rows.Scan(&r.Revision, &r.Kind, &r.LeafIndex); err != nil {
			return nil, err
		}
		if r.LeafIndex == nil {
			r.Pending = "being journaled"
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Service) pageAct(t Transition) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		o, err := s.Act(c.Request().Context(), p, c.Param("id"), t, strings.TrimSpace(c.FormValue("reason")))
		if err != nil {
			return s.pageError(c, err)
		}
		return c.Redirect(http.StatusSeeOther, PortalBase+"/orders/"+o.ID+"?done="+url.QueryEscape("Order "+o.Status))
	}
}

type deliveriesData struct {
	Awaiting Page[Order]
	Page     Page[Delivery]
}

func (s *Service) pageDeliveries(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	awaiting, err := s.Orders(ctx, p.OrganizationID, OrderFilter{Status: StatusShipped})
	if err != nil {
		return err
	}
	page, err := s.Deliveries(ctx, p.OrganizationID, DeliveryFilter{Cursor: c.QueryParam("cursor")})
	if err != nil {
		return s.pageError(c, err)
	}
	return s.render(c, http.StatusOK, "deliveries", "Deliveries", deliveriesData{Awaiting: awaiting, Page: page}, nil)
}

func (s *Service) pageVouchers(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	page, err := s.VoucherOrders(c.Request().Context(), p.OrganizationID, c.QueryParam("cursor"), 0)
	if err != nil {
		return s.pageError(c, err)
	}
	return s.render(c, http.StatusOK, "vouchers", "Vouchers", struct{ Page Page[VoucherOrder] }{page}, nil)
}

func (s *Service) pageSettlements(c echo.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	rows, err := s.Settlements(c.Request().Context(), p.OrganizationID)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "settlements", "Settlements", struct{ Rows []Settlement }{rows}, nil)
}

type demandData struct {
	Summary   []districtSummary
	Outlook   Outlook
	Filter    DemandFilter
	Districts []string
	Chart     *barChart
	Map       *districtMap
	K         int
}

func (s *Service) pageDemand(c echo.Context) error {
	ctx := c.Request().Context()
	f := DemandFilter{District: c.QueryParam("district"), Category: c.QueryParam("category")}
	o, err := s.Demand(ctx, f)
	if err != nil {
		return s.pageError(c, err)
	}
	all := o
	if f.District != "" || f.Category != "" {
		if all, err = s.Demand(ctx, DemandFilter{}); err != nil {
			return err
		}
	}
	var districts []string
	for _, d := range all.Districts {
		districts = append(districts, d.District)
	}
	d := demandData{Outlook: o, Filter: f, Districts: districts, K: K, Chart: chartOf(o.Totals), Map: mapOf(all), Summary: summaryOf(o.Cells)}
	return s.render(c, http.StatusOK, "demand", "Demand outlook", d, nil)
}

// districtSummary sums a district's published cells (never raw data, so
// no sum reveals a withheld cell).
type districtSummary struct {
	District           string
	SeedT, FertilizerT float64
	Cells              int
}

func summaryOf(cells []Cell) []districtSummary {
	by := map[string]*districtSummary{}
	var out []districtSummary
	for _, c := range cells {
		d := by[c.District]
		if d == nil {
			d = &districtSummary{District: c.District}
			by[c.District] = d
		}
		d.Cells++
		if c.Category == "seed" {
			d.SeedT += c.QuantityKg / 1000
		} else {
			d.FertilizerT += c.QuantityKg / 1000
		}
	}
	for _, d := range by {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].District < out[j].District })
	return out
}

// barChart is a grouped bar chart of tonnes by month and category, drawn
// as SVG by the template.
type barChart struct {
	W, H   int
	Bars   []bar
	Labels []label
	Grid   []gridLine
	Legend []legend
}

type bar struct {
	X, Y, W, Height float64
	Fill, Title     string
}
type label struct {
	X, Y float64
	Text string
}
type gridLine struct {
	X1, Y1, X2, Y2 float64
	Label          string
}
type legend struct {
	X, TX float64
	Fill  string
	Text  string
}

var categoryFill = map[string]string{"seed": "#c98b2b", "fertilizer": "#24583a"}

func chartOf(totals []MonthTotal) *barChart {
	if len(totals) == 0 {
		return nil
	}
	months := []string{}
	seen := map[string]bool{}
	max := 0.0
	for _, t := range totals {
		if !seen[t.Month] {
			seen[t.Month] = true
			months = append(months, t.Month)
		}
		max = math.Max(max, t.QuantityKg/1000)
	}
	sort.Strings(months)
	step := niceStep(max / 4)
	top := math.Ceil(max/step) * step
	if top == 0 {
		top = 1
	}
	ch := &barChart{W: 640, H: 240}
	left, right, bottom, topY := 48.0, 10.0, 24.0, 28.0
	plotH := float64(ch.H) - bottom - topY
	slot := (float64(ch.W) - left - right) / float64(len(months))
	for v := 0.0; v <= top+1e-9; v += step {
		y := topY + plotH - v/top*plotH
		ch.Grid = append(ch.Grid, gridLine{X1: left, Y1: y, X2: float64(ch.W) - right, Y2: y, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	cats := []string{"seed", "fertilizer"}
	bw := slot * 0.8 / float64(len(cats))
	for i, m := range months {
		x0 := left + float64(i)*slot + slot*0.1
		ch.Labels = append(ch.Labels, label{X: left + float64(i)*slot + slot/2, Y: float64(ch.H) - 8, Text: m})
		for j, cat := range cats {
			for _, t := range totals {
				if t.Month == m && t.Category == cat {
					h := t.QuantityKg / 1000 / top * plotH
					ch.Bars = append(ch.Bars, bar{X: x0 + float64(j)*bw, Y: topY + plotH - h, W: bw - 2, Height: h, Fill: categoryFill[cat],
						Title: fmt.Sprintf("%s %s: %.1f t", m, cat, t.QuantityKg/1000)})
				}
			}
		}
	}
	for i, cat := range cats {
		x := left + float64(i)*110
		ch.Legend = append(ch.Legend, legend{X: x, TX: x + 14, Fill: categoryFill[cat], Text: cat})
	}
	return ch
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// districtMap places districts by the centroid of their verified plots
// (equirectangular projection fitted to the districts shown).
type districtMap struct {
	W, H   int
	Points []mapPoint
}

type mapPoint struct {
	X, Y, R, LY float64
	Name, Title string
}

func mapOf(o Outlook) *districtMap {
	if len(o.Districts) == 0 {
		return nil
	}
	demand := map[string]float64{}
	for _, c := range o.Cells {
		demand[c.District] += c.QuantityKg
	}
	minLat, maxLat, minLon, maxLon := 90.0, -90.0, 180.0, -180.0
	maxD := 0.0
	for _, d := range o.Districts {
		minLat, maxLat = math.Min(minLat, d.Lat), math.Max(maxLat, d.Lat)
		minLon, maxLon = math.Min(minLon, d.Lon), math.Max(maxLon, d.Lon)
		maxD = math.Max(maxD, demand[d.District])
	}
	pad := 0.5
	minLat, maxLat, minLon, maxLon = minLat-pad, maxLat+pad, minLon-pad, maxLon+pad
	m := &districtMap{W: 640, H: 320}
	sx := float64(m.W) / (maxLon - minLon)
	sy := float64(m.H) / (maxLat - minLat)
	scale := math.Min(sx, sy)
	for _, d := range o.Districts {
		r := 6.0
		if maxD > 0 {
			r = 6 + 24*math.Sqrt(demand[d.District]/maxD)
		}
		x := (d.Lon - minLon) * scale
		y := (maxLat - d.Lat) * scale
		m.Points = append(m.Points, mapPoint{X: x, Y: y, R: r, LY: y + r + 12, Name: d.District,
			Title: fmt.Sprintf("%s: %d farmers, %.1f t expected", d.District, d.Farmers, demand[d.District]/1000)})
	}
	return m
}

var signInPage = template.Must(template.New("signin").ParseFS(templatesFS, "portal/templates/signin.html"))

// SignInPage draws identity's sign-in form in the portal's look (the
// composition root hands it to identity.Directory.MountSignIn).
func SignInPage(c echo.Context, status int, v identity.SignInView) error {
	var b bytes.Buffer
	if err := signInPage.ExecuteTemplate(&b, "signin", v); err != nil {
		return fmt.Errorf("render sign-in: %w", err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	return c.HTMLBlob(status, b.Bytes())
}
