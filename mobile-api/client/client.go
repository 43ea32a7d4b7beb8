// Package client is the reference Go client of Tani's mobile API: it logs
// an agent in (refreshing tokens as they expire), enrolls a device key,
// builds and signs records exactly as the field app must, and syncs them.
// The field-agent app, the tests and the load tool all follow it. It talks
// only HTTP and must never import server code.
//
// Signing, precisely: a record is a JSON object with members id, type,
// captured_at, device_id, location, payload and signature. The signing
// input is the RFC 8785 (JCS) canonical JSON of that object without its
// signature member; signature is the standard base64 of the 64-byte
// Ed25519 signature of that input by the device's enrolled key.
package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/record"
)

// Client is one agent on one device.
type Client struct {
	base string
	http *http.Client

	mu      sync.Mutex
	access  string
	refresh string
	agentID string

	deviceID string
	key      ed25519.PrivateKey

	mediaChunk int64
}

// New returns a client for the API at base (e.g. https://tani.example).
func New(base string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 60 * time.Second}
	}
	return &Client{base: base, http: httpClient}
}

// Error is an answer in the API's error shape.
type Error struct {
	Status  int
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields"`
}

// FieldError names one invalid field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	for _, f := range e.Fields {
		msg += fmt.Sprintf("; %s: %s", f.Field, f.Message)
	}
	return msg
}

// ThrottledError is a 429 (code too_many): the server refuses the call
// for a while — after too many failed logins of the agent's name or from
// the phone's address (which a carrier's NAT may share with many other
// phones). The app should tell the agent to wait RetryAfter, not retry
// at once (each attempt while locked is refused again).
type ThrottledError struct {
	API        *Error
	RetryAfter time.Duration // from Retry-After; 0 when the server gave none
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%s (retry after %s)", e.API.Error(), e.RetryAfter)
}

// Unwrap lets errors.As still find the *Error.
func (e *ThrottledError) Unwrap() error { return e.API }

// Login authenticates the agent. While the agent's name or the phone's
// address is locked after failed logins it returns a *ThrottledError.
func (c *Client) Login(ctx context.Context, username, password string) error {
	var pair tokenPair
	if err := c.call(ctx, http.MethodPost, "/mobile/v1/auth/login", "", map[string]string{"username": username, "password": password}, &pair); err != nil {
		return err
	}
	c.setTokens(pair)
	return nil
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	AgentID      string `json:"agent_id"`
}

func (c *Client) setTokens(p tokenPair) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.access, c.refresh, c.agentID = p.AccessToken, p.RefreshToken, p.AgentID
}

// AgentID is the logged-in agent.
func (c *Client) AgentID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agentID
}

// Refresh trades the refresh token for new tokens.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	refresh := c.refresh
	c.mu.Unlock()
	var pair tokenPair
	if err := c.call(ctx, http.MethodPost, "/mobile/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}, &pair); err != nil {
		return err
	}
	c.setTokens(pair)
	return nil
}

// EnrollDevice registers the device's public key and uses key to sign
// from now on. Generate key once per install and keep it in the keystore.
func (c *Client) EnrollDevice(ctx context.Context, name string, key ed25519.PrivateKey) (string, error) {
	var d struct {
		ID string `json:"id"`
	}
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	if err := c.authed(ctx, http.MethodPost, "/mobile/v1/devices", map[string]string{"name": name, "public_key": pub}, &d); err != nil {
		return "", err
	}
	c.UseDevice(d.ID, key)
	return d.ID, nil
}

// UseDevice sets the device that signs records (an already enrolled one).
func (c *Client) UseDevice(id string, key ed25519.PrivateKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deviceID, c.key = id, key
}

// Location is where the phone was at capture.
type Location struct {
	Lat, Lon  float64
	AccuracyM float64
	Mock      bool
}

// NewID returns a new id for a record, farmer, plot or consent: a UUID of
// version 7 (RFC 9562), whose leading bits are the time it was made, in
// lowercase. The server accepts any UUID, but these ids become keys of
// B-tree indexes on every step of the pipeline (submissions, the journal,
// attest's decisions, the farm tables). Ids made in time order are added
// near the right edge of each index, where random (version 4) ids land
// every insert on a different page (docs/performance.md). An id made
// this way says when it was made, to the millisecond, which its record's
// captured_at already says.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Record builds and signs a record with a new id (NewID). payload is one
// of the record type's payload shapes (see docs/api.md), as a struct or a
// map.
func (c *Client) Record(typ record.Type, capturedAt time.Time, loc Location, payload any) (json.RawMessage, string, error) {
	return c.RecordWithID(NewID(), typ, capturedAt, loc, payload)
}

// RecordWithID is Record with the caller's id (the app makes ids at
// capture and keeps them across retries).
func (c *Client) RecordWithID(id string, typ record.Type, capturedAt time.Time, loc Location, payload any) (json.RawMessage, string, error) {
	c.mu.Lock()
	deviceID, key := c.deviceID, c.key
	c.mu.Unlock()
	if key == nil {
		return nil, "", errors.New("no device: call EnrollDevice or UseDevice first")
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, "", fmt.Errorf("encode payload: %w", err)
	}
	lat, lon := loc.Lat, loc.Lon
	env := record.Envelope{
		ID: id, Type: typ, CapturedAt: capturedAt.UTC().Format(time.RFC3339), DeviceID: deviceID,
		Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: loc.AccuracyM, Mock: loc.Mock}, Payload: p,
	}
	_, raw, err := record.Sign(key, env)
	if err != nil {
		return nil, "", fmt.Errorf("sign record: %w", err)
	}
	return raw, id, nil
}

// SyncResult is the outcome of one record.
type SyncResult struct {
	ID     string       `json:"id"`
	Status string       `json:"status"` // accepted, duplicate, rejected
	Errors []FieldError `json:"errors"`
}

// Sync sends a batch. A 400 whose records were all rejected is returned as
// an *Error; per-record outcomes otherwise.
func (c *Client) Sync(ctx context.Context, records []json.RawMessage) ([]SyncResult, error) {
	var out struct {
		Results []SyncResult `json:"results"`
	}
	if err := c.authed(ctx, http.MethodPost, "/mobile/v1/sync", map[string]any{"records": records}, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// SyncBody is a /sync request encoded once. The app keeps a batch in its
// outbox and sends the same bytes on every retry until it is answered;
// the load tool encodes its batches before its clock starts.
type SyncBody struct {
	body []byte
}

// EncodeSync encodes a batch of signed records as a /sync body.
func EncodeSync(records []json.RawMessage) (SyncBody, error) {
	b, err := json.Marshal(map[string]any{"records": records})
	return SyncBody{body: b}, err
}

// SyncBody syncs a batch encoded by EncodeSync; see Sync.
func (c *Client) SyncBody(ctx context.Context, b SyncBody) ([]SyncResult, error) {
	var out struct {
		Results []SyncResult `json:"results"`
	}
	if err := c.authed(ctx, http.MethodPost, "/mobile/v1/sync", encoded(b.body), &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// encoded is a request body that is already JSON.
type encoded []byte

// Status is what became of a record.
type Status struct {
	ID     string  `json:"id"`
	Type   string  `json:"type"`
	Status string  `json:"status"`
	Reason *string `json:"reason"`
}

// Status asks what became of a record.
func (c *Client) Status(ctx context.Context, id string) (Status, error) {
	var st Status
	err := c.authed(ctx, http.MethodGet, "/mobile/v1/records/"+id, nil, &st)
	return st, err
}

// RequestOTP sends a consent code to the farmer's phone.
func (c *Client) RequestOTP(ctx context.Context, farmerID string) (string, error) {
	var out struct {
		ChallengeID string `json:"challenge_id"`
	}
	err := c.authed(ctx, http.MethodPost, "/mobile/v1/otp", map[string]string{"farmer_id": farmerID}, &out)
	return out.ChallengeID, err
}

// Offer is a loan as the agent's phone sees it (GET
// /mobile/v1/farmers/{id}/loans, and with a loan code).
type Offer struct {
	LoanID         string     `json:"loan_id"`
	Lender         string     `json:"lender"`
	State          string     `json:"state"`
	Currency       string     `json:"currency"`
	Principal      *int64     `json:"principal"`
	TotalDue       *int64     `json:"total_due"`
	Balance        int64      `json:"balance"`
	DueOn          *string    `json:"due_on"`
	TermsSHA256    *string    `json:"terms_sha256"`
	OfferExpiresAt *time.Time `json:"offer_expires_at"`
	Refusals       []struct {
		RecordID string `json:"record_id"`
		Type     string `json:"type"`
		Reason   string `json:"reason"`
	} `json:"refusals"`
}

// RequestLoanOTP sends the farmer a code that accepts the loan's open
// offer, with the terms in the SMS; it returns the challenge and the offer
// (whose TermsSHA256 the loan.accepted record names).
func (c *Client) RequestLoanOTP(ctx context.Context, farmerID, loanID string) (string, Offer, error) {
	var out struct {
		ChallengeID string `json:"challenge_id"`
		Offer       Offer  `json:"offer"`
	}
	err := c.authed(ctx, http.MethodPost, "/mobile/v1/otp", map[string]string{"farmer_id": farmerID, "loan_id": loanID}, &out)
	return out.ChallengeID, out.Offer, err
}

// FarmerLoans lists an assigned farmer's loans.
func (c *Client) FarmerLoans(ctx context.Context, farmerID string) ([]Offer, error) {
	var out struct {
		Loans []Offer `json:"loans"`
	}
	err := c.authed(ctx, http.MethodGet, "/mobile/v1/farmers/"+farmerID+"/loans", nil, &out)
	return out.Loans, err
}

// RequestDeliveryOTP sends a delivery code to the farmer's phone: the
// farmer reads it back once the goods are received (delivery.confirmed).
func (c *Client) RequestDeliveryOTP(ctx context.Context, farmerID string) (string, error) {
	var out struct {
		ChallengeID string `json:"challenge_id"`
	}
	err := c.authed(ctx, http.MethodPost, "/mobile/v1/otp", map[string]string{"farmer_id": farmerID, "purpose": "delivery"}, &out)
	return out.ChallengeID, err
}

// authed calls with the access token, refreshing once on 401.
func (c *Client) authed(ctx context.Context, method, path string, in, out any) error {
	c.mu.Lock()
	token := c.access
	c.mu.Unlock()
	err := c.call(ctx, method, path, token, in, out)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
		if rerr := c.Refresh(ctx); rerr != nil {
			return err
		}
		c.mu.Lock()
		token = c.access
		c.mu.Unlock()
		return c.call(ctx, method, path, token, in, out)
	}
	return err
}

func (c *Client) call(ctx context.Context, method, path, token string, in, out any) error {
	return do(ctx, c.http, method, c.base+path, token, in, out)
}

func do(ctx context.Context, hc *http.Client, method, url, token string, in, out any) error {
	var body io.Reader
	switch in := in.(type) {
	case nil:
	case encoded:
		body = bytes.NewReader(in)
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error Error `json:"error"`
		}
		apiErr := &e.Error
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			apiErr = &Error{Code: "http", Message: string(raw)}
		}
		apiErr.Status = resp.StatusCode
		if resp.StatusCode == http.StatusTooManyRequests {
			return &ThrottledError{API: apiErr, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		}
		return apiErr
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
