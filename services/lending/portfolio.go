package lending

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// PortfolioRow is the book's figures for one group, in one currency.
//
//   - PAR30 / PAR90: portfolio at risk, the outstanding balance of loans
//     30 / 90 or more days past due over the whole outstanding balance
//     (CGAP's definition; restructured loans count with their new due
//     date, as the schedule the farmer now owes);
//   - RepaymentRate: of the amounts that have fallen due (loans out or
//     closed whose due date has passed), the share repaid;
//   - DisbursedVolume: principal of every loan ever disbursed.
type PortfolioRow struct {
	Group           string         `json:"group"`
	Currency        string         `json:"currency"`
	Loans           int64          `json:"loans"`
	States          map[string]int `json:"states"`
	LoansOut        int64          `json:"loans_out"`
	Outstanding     int64          `json:"outstanding"`
	AtRisk30        int64          `json:"at_risk_30"`
	AtRisk90        int64          `json:"at_risk_90"`
	PAR30           float64        `json:"par30"`
	PAR90           float64        `json:"par90"`
	FallenDue       int64          `json:"fallen_due"`
	RepaidOfDue     int64          `json:"repaid_of_due"`
	RepaymentRate   *float64       `json:"repayment_rate"`
	DisbursedVolume int64          `json:"disbursed_volume"`
	Repaid          int64          `json:"repaid"`
}

// groupColumns are the portfolio's groupings.
var groupColumns = map[string]string{
	"":        `'all'`,
	"region":  `coalesce(nullif(l.region, ''), 'unknown')`,
	"crop":    `l.crop`,
	"product": `l.product_id::text`,
	"agent":   `coalesce(l.agent_id::text, 'bank')`,
}

func (s *Service) portfolioRows(ctx context.Context, org, groupBy string) ([]PortfolioRow, error) {
	col, ok := groupColumns[groupBy]
	if !ok {
		return nil, apperr.Fields("bad query", apperr.FieldError{Field: "group_by", Message: "must be region, crop, product or agent"})
	}
	today := dayOf(s.now())
	// From the read pool: a report may trail by the replica's lag.
	rows, err := s.readPool.Query(ctx, `
		WITH b AS (
		    SELECT `+col+` AS grp, l.currency, l.state,
		           CASE WHEN l.state IN ('disbursed', 'in_arrears', 'restructured') THEN l.total_due - l.paid ELSE 0 END AS outstanding,
		           CASE WHEN l.state IN ('disbursed', 'in_arrears', 'restructured') AND l.paid < l.total_due
		                THEN greatest($2::date - l.due_on, 0) ELSE 0 END AS dpd,
		           CASE WHEN l.disbursed_at IS NOT NULL AND l.due_on < $2::date THEN l.total_due ELSE 0 END AS fallen_due,
		           CASE WHEN l.disbursed_at IS NOT NULL AND l.due_on < $2::date THEN least(l.paid, l.total_due) ELSE 0 END AS repaid_of_due,
		           CASE WHEN l.disbursed_at IS NOT NULL THEN l.principal ELSE 0 END AS disbursed,
		           l.paid
		    FROM lending.loans l WHERE l.organization_id = $1)
		, s AS (
		    SELECT grp, currency, state, count(*) AS n, sum((outstanding > 0)::int) AS out_n, sum(outstanding) AS outstanding,
		           sum(CASE WHEN dpd >= 30 THEN outstanding ELSE 0 END) AS r30, sum(CASE WHEN dpd >= 90 THEN outstanding ELSE 0 END) AS r90,
		           sum(fallen_due) AS fd, sum(repaid_of_due) AS rd, sum(disbursed) AS disb, sum(paid) AS paid
		    FROM b GROUP BY grp, currency, state)
		SELECT grp, currency, sum(n)::bigint, jsonb_object_agg(state, n), sum(out_n)::bigint, sum(outstanding)::bigint, sum(r30)::bigint,
		       sum(r90)::bigint, sum(fd)::bigint, sum(rd)::bigint, sum(disb)::bigint, sum(paid)::bigint
		FROM s
		GROUP BY grp, currency ORDER BY grp, currency`, org, today)
	if err != nil {
		return nil, fmt.Errorf("portfolio of %s: %w", org, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PortfolioRow, error) {
		var p PortfolioRow
		err := r.Scan(&p.Group, &p.Currency, &p.Loans, &p.States, &p.LoansOut, &p.Outstanding, &p.AtRisk30, &p.AtRisk90, &p.FallenDue,
			&p.RepaidOfDue, &p.DisbursedVolume, &p.Repaid)
		if p.Outstanding > 0 {
			p.PAR30 = round4(float64(p.AtRisk30) / float64(p.Outstanding))
			p.PAR90 = round4(float64(p.AtRisk90) / float64(p.Outstanding))
		}
		if p.FallenDue > 0 {
			rate := round4(float64(p.RepaidOfDue) / float64(p.FallenDue))
			p.RepaymentRate = &rate
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("portfolio of %s: %w", org, err)
	}
	if out == nil {
		out = []PortfolioRow{}
	}
	return out, nil
}

func round4(x float64) float64 { return float64(int64(x*10000+0.5)) / 10000 }

// portfolio: GET /portfolio?group_by=region|crop|product|agent.
func (s *Service) portfolio(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	rows, err := s.portfolioRows(c.Request().Context(), bank.OrganizationID, c.QueryParam("group_by"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"as_of": dayOf(s.now()).Format(time.DateOnly), "group_by": c.QueryParam("group_by"), "rows": rows})
}

// portfolioCSV: GET /portfolio.csv?group_by=…: the same figures as CSV.
func (s *Service) portfolioCSV(c echo.Context) error {
	bank, err := bankOf(c)
	if err != nil {
		return err
	}
	rows, err := s.portfolioRows(c.Request().Context(), bank.OrganizationID, c.QueryParam("group_by"))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="portfolio-%s.csv"`, dayOf(s.now()).Format(time.DateOnly)))
	c.Response().WriteHeader(http.StatusOK)
	w := csv.NewWriter(c.Response())
	by := c.QueryParam("group_by")
	if by == "" {
		by = "all"
	}
	_ = w.Write([]string{by, "currency", "loans", "loans_out", "outstanding", "at_risk_30", "at_risk_90", "par30", "par90",
		"fallen_due", "repaid_of_due", "repayment_rate", "disbursed_volume", "repaid"})
	for _, p := range rows {
		rate := ""
		if p.RepaymentRate != nil {
			rate = strconv.FormatFloat(*p.RepaymentRate, 'f', 4, 64)
		}
		i := func(n int64) string { return strconv.FormatInt(n, 10) }
		_ = w.Write([]string{csvSafe(p.Group), p.Currency, i(p.Loans), i(p.LoansOut), i(p.Outstanding), i(p.AtRisk30), i(p.AtRisk90),
			strconv.FormatFloat(p.PAR30, 'f', 4, 64), strconv.FormatFloat(p.PAR90, 'f', 4, 64), i(p.FallenDue), i(p.RepaidOfDue), rate,
			i(p.DisbursedVolume), i(p.Repaid)})
	}
	w.Flush()
	return w.Error()
}

// csvSafe defuses a cell a spreadsheet would run as a formula.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}
