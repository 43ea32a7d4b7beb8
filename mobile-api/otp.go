package mobileapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/httpserver"
)

// SMSSender delivers a text to a phone. Production plugs in a gateway;
// development logs that a message was sent (and the code, so a developer
// can complete the flow).
type SMSSender interface {
	Send(ctx context.Context, phone, text string) error
}

// LogSMS is the development sender.
type LogSMS struct{ Logger *slog.Logger }

// Send logs the message with the phone masked.
func (l LogSMS) Send(ctx context.Context, phone, text string) error {
	masked := phone
	if len(phone) > 4 {
		masked = phone[:3] + "…" + phone[len(phone)-3:]
	}
	l.Logger.InfoContext(ctx, "SMS (development sender: not delivered)", "to", masked, "text", text)
	return nil
}

// otpTTL is long because the consent record may sync days later.
const otpTTL = 14 * 24 * time.Hour

// createOTP sends a one-time code to the farmer's registered phone. The
// farmer reads it back to the agent, who puts it in the consent record:
// proof that the farmer, not only the agent, agreed.
func (s *Service) createOTP(c echo.Context) error {
	var in struct {
		FarmerID string `json:"farmer_id" validate:"required,uuid"`
		// LoanID asks for a code that accepts this loan's offer (see
		// createLoanOTP) rather than a consent code.
		LoanID string `json:"loan_id,omitempty" validate:"omitempty,uuidlower"`
		// Purpose is what the code confirms: a consent (default) or the
		// receipt of delivered goods. A code serves only its purpose.
		Purpose string `json:"purpose,omitempty" validate:"omitempty,oneof=consent delivery"`
	}
	if err := httpserver.Bind(c, &in); err != nil {
		return err
	}
	if in.LoanID != "" {
		if in.Purpose != "" {
			return apperr.Fields("a loan code has no other purpose", apperr.FieldError{Field: "purpose", Message: "must be empty with loan_id"})
		}
		return s.createLoanOTP(c, in.FarmerID, in.LoanID)
	}
	if in.Purpose == "" {
		in.Purpose = PurposeConsent
	}
	ctx := c.Request().Context()
	agent := auth.ClaimsOf(c).Subject
	if ok, err := s.assigned(ctx, agent, in.FarmerID); err != nil {
		return err
	} else if !ok {
		return apperr.Errorf(apperr.Forbidden, "you are not assigned to this farmer")
	}
	var sealed []byte
	err := s.pool.QueryRow(ctx, `SELECT phone_enc FROM ingest.farmer_contacts WHERE farmer_id = $1`, in.FarmerID).Scan(&sealed)
	if err == pgx.ErrNoRows {
		return apperr.Errorf(apperr.NotFound, "this farmer's registration has not been ingested yet")
	}
	if err != nil {
		return err
	}
	phone, err := s.pii.Decrypt(sealed)
	if err != nil {
		return err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return err
	}
	code := fmt.Sprintf("%06d", n.Int64())
	id := uuid.NewString()
	expires := time.Now().Add(otpTTL)
	if _, err := s.pool.Exec(ctx, `INSERT INTO mobile.otp_challenges (id, farmer_id, agent_id, code_hash, expires_at, purpose) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, in.FarmerID, agent, auth.HashToken(id+":"+code), expires, in.Purpose); err != nil {
		return err
	}
	text := "Tani: your consent code is " + code + ". Tell it to the agent only if you agree to share your data."
	if in.Purpose == PurposeDelivery {
		text = "Tani: your delivery code is " + code + ". Tell it to the agent only once you have received the goods."
	}
	if err := s.sms.Send(ctx, phone, text); err != nil {
		return apperr.Wrap(apperr.Unavailable, err, "the SMS could not be sent; retry later")
	}
	return c.JSON(http.StatusCreated, map[string]any{"challenge_id": id, "expires_at": expires})
}

// The purposes of one-time codes.
const (
	PurposeConsent  = "consent"
	PurposeDelivery = "delivery"
)

// checkOTP verifies a record's one-time code for the farmer and purpose.
// It does not consume it: remember does, with the batch. A code already
// used by this same record (a retried upload) still verifies.
func (s *Service) checkOTP(ctx context.Context, recordID, farmerID, purpose, challengeID, code string) (bool, error) {
	var want []byte
	var expires time.Time
	var usedBy *string
	// A code sent to accept a loan offer (loan_id set) is neither a
	// consent code nor a delivery code.
	err := s.pool.QueryRow(ctx, `SELECT code_hash, expires_at, used_by::text FROM mobile.otp_challenges WHERE id = $1 AND farmer_id = $2 AND purpose = $3 AND loan_id IS NULL`,
		challengeID, farmerID, purpose).Scan(&want, &expires, &usedBy)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ok := subtle.ConstantTimeCompare(want, auth.HashToken(challengeID+":"+code)) == 1
	return ok && (usedBy == nil || *usedBy == recordID) && time.Now().Before(expires), nil
}
