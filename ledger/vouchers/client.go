package vouchers

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
	vcc "github.com/tani-platform/tani/ledger/chaincode/vouchers"
	"github.com/tani-platform/tani/ledger/fabric"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the projection's schema (vouchers), applied by the
// postgres module like every module's.
var Migrations = postgres.Migrations{Name: "vouchers", FS: postgres.MustSub(migrationsFS, "migrations")}

// DefaultChaincode is the vouchers chaincode's name on the channel.
const DefaultChaincode = "vouchers"

// The chaincode's types, so that services import only this package.
type (
	Voucher       = vcc.Voucher
	Money         = vcc.Money
	Goods         = vcc.Goods
	Redemption    = vcc.Redemption
	Settlement    = vcc.Settlement
	Organization  = vcc.Organization
	IssueRequest  = vcc.IssueRequest
	RedeemRequest = vcc.RedeemRequest
)

// Voucher states and organization roles (see the chaincode).
const (
	StatusIssued    = vcc.StatusIssued
	StatusRedeemed  = vcc.StatusRedeemed
	StatusSettled   = vcc.StatusSettled
	RoleOperator    = vcc.RoleOperator
	RoleBank        = vcc.RoleBank
	RoleDistributor = vcc.RoleDistributor
)

// Categories lists the input categories a voucher may be spent on.
func Categories() []string { return vcc.Categories() }

// ValidPaymentReference reports whether Settle's chaincode accepts ref as
// a payment reference.
func ValidPaymentReference(ref string) bool { return vcc.ValidPaymentReference(ref) }

// Identity is an organization's client identity: its MSP ID and the MSP
// directory holding its certificate (signcerts/) and private key
// (keystore/), as Fabric CA enrollment or cryptogen writes it.
type Identity struct {
	MSPID string
	// Cert and Key are the certificate's PEM file and the key's PEM file
	// (or a keystore directory holding one key).
	Cert, Key string
}

// MSPDirIdentity is the identity in an MSP directory (signcerts/cert.pem
// or the one file in signcerts/, and keystore/).
func MSPDirIdentity(mspID, dir string) Identity {
	cert := filepath.Join(dir, "signcerts", "cert.pem")
	if m, _ := filepath.Glob(filepath.Join(dir, "signcerts", "*.pem")); len(m) == 1 {
		cert = m[0]
	}
	return Identity{MSPID: mspID, Cert: cert, Key: filepath.Join(dir, "keystore")}
}

// Client calls the vouchers chaincode through one peer's gateway as any of
// its identities. It is safe for concurrent use.
type Client struct {
	as     map[string]*fabric.Client // by MSP ID
	order  []string
	logger *slog.Logger
}

// Dial connects to the gateway gw names (endpoint, TLS, channel, timeouts,
// retries; its identity fields are ignored) once per identity. The
// chaincode is gw.Chaincode, DefaultChaincode when empty or the anchor's
// default. At least one identity is needed; the first also reads.
func Dial(gw fabric.Config, ids []Identity, logger *slog.Logger) (*Client, error) {
	if len(ids) == 0 {
		return nil, errors.New("vouchers: at least one identity is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if gw.Chaincode == "" || gw.Chaincode == fabric.DefaultChaincode {
		gw.Chaincode = DefaultChaincode
	}
	c := &Client{as: map[string]*fabric.Client{}, logger: logger}
	for _, id := range ids {
		if _, dup := c.as[id.MSPID]; dup {
			c.Close()
			return nil, fmt.Errorf("vouchers: two identities for %s", id.MSPID)
		}
		cfg := gw
		cfg.MSPID, cfg.Cert, cfg.Key = id.MSPID, id.Cert, id.Key
		fc, err := fabric.Dial(cfg, logger.With("msp_id", id.MSPID))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("vouchers: identity of %s: %w", id.MSPID, err)
		}
		c.as[id.MSPID] = fc
		c.order = append(c.order, id.MSPID)
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	var errs []error
	for _, fc := range c.as {
		errs = append(errs, fc.Close())
	}
	return errors.Join(errs...)
}

// Identities lists the MSP IDs the client can act as.
func (c *Client) Identities() []string { return slices.Clone(c.order) }

// Chaincode is the vouchers chaincode's name on the channel.
func (c *Client) Chaincode() string { return c.as[c.order[0]].Chaincode() }

// Channel is the channel the chaincode runs on.
func (c *Client) Channel() string { return c.as[c.order[0]].Channel() }

func (c *Client) acting(mspID string) (*fabric.Client, error) {
	fc, ok := c.as[mspID]
	if !ok {
		return nil, apperr.Errorf(apperr.Forbidden, "vouchers: Tani holds no Fabric identity of %s (it holds %s)", mspID, strings.Join(c.order, ", "))
	}
	return fc, nil
}

// Issue issues a voucher as bank (an MSP ID registered as a bank whose
// identity the client holds). It is idempotent by r.ID: issuing a voucher
// the chain already holds, identical and by the same bank, returns it.
func (c *Client) Issue(ctx context.Context, bank string, r IssueRequest) (*Voucher, error) {
	fc, err := c.acting(bank)
	if err != nil {
		return nil, err
	}
	arg, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("vouchers: encode issue %s: %w", r.ID, err)
	}
	v, err := c.submit(ctx, fc, "Issue", string(arg))
	if vcc.IsRefusal(err, vcc.ClassConflict) && strings.Contains(err.Error(), "a voucher with this id exists") {
		if got, gerr := c.Get(ctx, r.ID); gerr == nil && sameIssue(got, bank, r) {
			return got, nil
		}
	}
	return v, mapError(err, "issue voucher "+r.ID)
}

// Redeem redeems voucher id as distributor (an MSP ID registered as a
// distributor whose identity the client holds) for the delivery r. It is
// idempotent by delivery: redeeming again with the same delivery and
// goods, by the same distributor, returns the redeemed voucher.
func (c *Client) Redeem(ctx context.Context, distributor, id string, r RedeemRequest) (*Voucher, error) {
	fc, err := c.acting(distributor)
	if err != nil {
		return nil, err
	}
	arg, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("vouchers: encode redemption of %s: %w", id, err)
	}
	v, err := c.submit(ctx, fc, "Redeem", id, string(arg))
	if vcc.IsRefusal(err, vcc.ClassConflict) && strings.Contains(err.Error(), "already redeemed") {
		if got, gerr := c.Get(ctx, id); gerr == nil && sameRedemption(got, distributor, r) {
			return got, nil
		}
	}
	return v, mapError(err, "redeem voucher "+id)
}

// Settle records, as bank (the issuer), that the redeemed voucher id was
// paid under paymentReference. It is idempotent by payment reference.
func (c *Client) Settle(ctx context.Context, bank, id, paymentReference string) (*Voucher, error) {
	fc, err := c.acting(bank)
	if err != nil {
		return nil, err
	}
	v, err := c.submit(ctx, fc, "Settle", id, paymentReference)
	if vcc.IsRefusal(err, vcc.ClassConflict) && strings.Contains(err.Error(), "already settled") {
		if got, gerr := c.Get(ctx, id); gerr == nil && got.Settlement != nil && got.Settlement.PaymentReference == paymentReference {
			return got, nil
		}
	}
	return v, mapError(err, "settle voucher "+id)
}

// Get reads voucher id from the chain (a query on one peer).
func (c *Client) Get(ctx context.Context, id string) (*Voucher, error) {
	b, err := c.as[c.order[0]].Evaluate(ctx, "GetVoucher", id)
	if err != nil {
		return nil, mapError(refusalOf(err), "read voucher "+id)
	}
	var v Voucher
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("vouchers: decode voucher %s: %w", id, err)
	}
	return &v, nil
}

// Organization reads mspID's registry entry, nil when it is not
// registered.
func (c *Client) Organization(ctx context.Context, mspID string) (*Organization, error) {
	b, err := c.as[c.order[0]].Evaluate(ctx, "GetOrganization", mspID)
	if err != nil {
		return nil, mapError(refusalOf(err), "read organization "+mspID)
	}
	if len(b) == 0 {
		return nil, nil
	}
	var o Organization
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("vouchers: decode organization %s: %w", mspID, err)
	}
	return &o, nil
}

// RegisterOrganization registers mspID's role, acting as admin (an MSP ID
// whose identity here is an organization administrator's). The
// registration needs the chaincode-level policy's endorsements (a majority
// of the consortium); an MSP already registered with that role is not an
// error.
func (c *Client) RegisterOrganization(ctx context.Context, admin, mspID, role string) (*Organization, error) {
	fc, err := c.acting(admin)
	if err != nil {
		return nil, err
	}
	b, _, err := fc.Submit(ctx, "RegisterOrganization", []string{mspID, role}, nil)
	if err = refusalOf(err); err != nil {
		if vcc.IsRefusal(err, vcc.ClassConflict) {
			if o, gerr := c.Organization(ctx, mspID); gerr == nil && o != nil && o.Role == role {
				return o, nil
			}
		}
		return nil, mapError(err, "register "+mspID)
	}
	var o Organization
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("vouchers: decode registration of %s: %w", mspID, err)
	}
	return &o, nil
}

// EnsureRegistered registers every MSP of roles (MSP ID → role) that the
// chain does not know yet, acting as admin, in a fixed order (the operator
// first). A role the chain already holds differently is an error.
func (c *Client) EnsureRegistered(ctx context.Context, admin string, roles map[string]string) error {
	msps := make([]string, 0, len(roles))
	for m := range roles {
		msps = append(msps, m)
	}
	sort.Slice(msps, func(i, j int) bool {
		oi, oj := roles[msps[i]] == RoleOperator, roles[msps[j]] == RoleOperator
		if oi != oj {
			return oi
		}
		return msps[i] < msps[j]
	})
	for _, m := range msps {
		o, err := c.Organization(ctx, m)
		if err != nil {
			return err
		}
		if o != nil {
			if o.Role != roles[m] {
				return apperr.Errorf(apperr.Conflict, "vouchers: %s is registered as %s on the chain, not %s", m, o.Role, roles[m])
			}
			continue
		}
		if _, err := c.RegisterOrganization(ctx, admin, m, roles[m]); err != nil {
			return err
		}
		c.logger.InfoContext(ctx, "registered organization for vouchers", "msp_id", m, "role", roles[m])
	}
	return nil
}

// submit runs fn and decodes the voucher it returns; a contract refusal
// comes back as the *vcc.Refusal.
//
// A transaction invalidated for its endorsements is sent once more as a
// new proposal: a concurrent change to the same voucher (a second
// redemption endorsed before the first committed) is invalidated that way
// — its key-level policy changed under it, which the peers check before
// MVCC — and the contract then gives the real answer ("already redeemed").
func (c *Client) submit(ctx context.Context, fc *fabric.Client, fn string, args ...string) (*Voucher, error) {
	var b []byte
	var st *client.Status
	var err error
	for attempt := 0; ; attempt++ {
		b, st, err = fc.Submit(ctx, fn, args, func(txID string) error {
			c.logger.DebugContext(ctx, "vouchers transaction", "fn", fn, "tx_id", txID)
			return nil
		})
		var inv *fabric.InvalidatedError
		if attempt == 0 && errors.As(err, &inv) && inv.Code == peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
			c.logger.WarnContext(ctx, "vouchers transaction invalidated for its endorsements; trying once more", "fn", fn, "tx_id", inv.TxID)
			continue
		}
		break
	}
	if err != nil {
		return nil, refusalOf(err)
	}
	var v Voucher
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("vouchers: decode %s result of tx %s: %w", fn, st.TransactionID, err)
	}
	return &v, nil
}

// refusalOf returns the contract's refusal inside a gateway error (in the
// endorsers' details, or in the message), or err itself.
func refusalOf(err error) error {
	if err == nil {
		return nil
	}
	var msgs []string
	var ee *client.EndorseError
	if errors.As(err, &ee) {
		for _, d := range ee.Details() {
			msgs = append(msgs, d.GetMessage())
		}
	}
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if ed, ok := d.(interface{ GetMessage() string }); ok {
				msgs = append(msgs, ed.GetMessage())
			}
		}
	}
	msgs = append(msgs, err.Error())
	for _, m := range msgs {
		if r := vcc.ParseRefusal(m); r != nil {
			return r
		}
	}
	return err
}

// mapError gives err the apperr class a caller can act on: the contract's
// refusal class; a transaction the peers invalidated for its endorsements
// (forbidden: the organizations the policy names did not all endorse) or
// for a conflict that outlived the retries (conflict); a chain that could
// not be reached (unavailable).
func mapError(err error, what string) error {
	if err == nil {
		return nil
	}
	var r *vcc.Refusal
	if errors.As(err, &r) {
		code := map[string]apperr.Code{
			vcc.ClassInvalid: apperr.Invalid, vcc.ClassNotFound: apperr.NotFound,
			vcc.ClassConflict: apperr.Conflict, vcc.ClassForbidden: apperr.Forbidden,
		}[r.Class]
		return apperr.Wrap(code, r, "%s", r.Message)
	}
	var inv *fabric.InvalidatedError
	if errors.As(err, &inv) {
		switch inv.Code {
		case peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE:
			return apperr.Wrap(apperr.Forbidden, err, "%s: the chain invalidated transaction %s: it lacks the endorsements its policy requires", what, inv.TxID)
		case peer.TxValidationCode_MVCC_READ_CONFLICT, peer.TxValidationCode_PHANTOM_READ_CONFLICT:
			return apperr.Wrap(apperr.Conflict, err, "%s: transaction %s conflicted with a concurrent change; try again", what, inv.TxID)
		}
		return apperr.Wrap(apperr.Internal, err, "%s: the chain invalidated transaction %s (%s)", what, inv.TxID, inv.Code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("vouchers: %s: %w", what, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.FailedPrecondition:
		return apperr.Wrap(apperr.Unavailable, err, "%s: the Fabric network is unavailable", what)
	}
	return apperr.Wrap(apperr.Internal, err, "%s", what)
}

func sameIssue(v *Voucher, bank string, r IssueRequest) bool {
	return v.Issuer == bank && v.ID == r.ID && v.BankOrg == r.BankOrg && v.FarmerID == r.FarmerID && v.LoanID == r.LoanID &&
		v.Amount == r.Amount && slices.Equal(v.Categories, r.Categories) && slices.Equal(v.Distributors, r.Distributors) &&
		slices.Equal(v.DistributorOrgs, r.DistributorOrgs) && v.Region == r.Region && v.ExpiresAt.Equal(r.ExpiresAt)
}

func sameRedemption(v *Voucher, distributor string, r RedeemRequest) bool {
	rd := v.Redemption
	return rd != nil && rd.Distributor == distributor && rd.DeliveryID == r.DeliveryID && rd.DistributorOrg == r.DistributorOrg &&
		rd.LeafIndex == r.LeafIndex && rd.ReceiptHash == r.ReceiptHash && rd.Region == r.Region && slices.Equal(rd.Goods, r.Goods)
}
