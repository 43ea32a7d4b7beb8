package vouchers

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Composite-key object types.
const (
	voucherKey  = "tani.voucher"
	orgKey      = "tani.org"
	laneKey     = "tani.lane"
	operatorKey = "tani.operator"
)

// adminOU is the NodeOU of an organization administrator's certificate.
const adminOU = "admin"

// Contract is the vouchers contract.
type Contract struct {
	contractapi.Contract
}

// New returns the vouchers chaincode, ready to host in the devnet or serve
// as chaincode-as-a-service.
func New() (*contractapi.ContractChaincode, error) {
	cc, err := contractapi.NewChaincode(&Contract{})
	if err != nil {
		return nil, fmt.Errorf("create vouchers chaincode: %w", err)
	}
	cc.Info.Title = "tani-vouchers"
	cc.Info.Version = "1.0"
	return cc, nil
}

// RegisterOrganization records the role (operator, bank or distributor) an
// MSP plays for vouchers. Only an organization administrator may call it;
// the registry entry is new state, so the chaincode-level policy (a
// majority of the consortium) must endorse it. A role is never changed,
// and there is one operator. A bank's or distributor's registration also
// creates its lane key, which only its own peer may endorse writes to.
func (c *Contract) RegisterOrganization(ctx contractapi.TransactionContextInterface, mspID, role string) (string, error) {
	stub := ctx.GetStub()
	admin, err := cid.HasOUValue(stub, adminOU)
	if err != nil {
		return "", fmt.Errorf("register %s: read creator certificate: %w", mspID, err)
	}
	if !admin {
		return "", forbidden("register %s: only an organization admin may register an organization", mspID)
	}
	if !mspRE.MatchString(mspID) {
		return "", invalid("register: %q is not an MSP ID", mspID)
	}
	switch role {
	case RoleOperator, RoleBank, RoleDistributor:
	default:
		return "", invalid("register %s: role %q is not operator, bank or distributor", mspID, role)
	}
	existing, err := c.organization(stub, mspID)
	if err != nil {
		return "", err
	}
	if existing != nil {
		return "", conflict("register %s: already registered as %s in tx %s; a role is never changed", mspID, existing.Role, existing.TxID)
	}
	by, err := cid.GetMSPID(stub)
	if err != nil {
		return "", fmt.Errorf("register %s: creator MSP ID: %w", mspID, err)
	}
	if role == RoleOperator {
		op, err := c.operator(stub)
		if err != nil {
			return "", err
		}
		if op != "" {
			return "", conflict("register %s: %s is already the operator", mspID, op)
		}
	}
	org := Organization{MSPID: mspID, Role: role, RegisteredBy: by, TxID: stub.GetTxID()}
	key, err := stub.CreateCompositeKey(orgKey, []string{mspID})
	if err != nil {
		return "", err
	}
	if err := putJSON(stub, key, org); err != nil {
		return "", err
	}
	switch role {
	case RoleOperator:
		opKey, err := stub.CreateCompositeKey(operatorKey, nil)
		if err != nil {
			return "", err
		}
		if err := stub.PutState(opKey, []byte(mspID)); err != nil {
			return "", fmt.Errorf("register %s: write operator: %w", mspID, err)
		}
	default:
		if err := c.writeLane(stub, mspID, true); err != nil {
			return "", err
		}
	}
	return marshal(org)
}

// GetOrganization returns an MSP's registry entry, or an empty result when
// it is not registered.
func (c *Contract) GetOrganization(ctx contractapi.TransactionContextInterface, mspID string) (string, error) {
	org, err := c.organization(ctx.GetStub(), mspID)
	if err != nil || org == nil {
		return "", err
	}
	return marshal(org)
}

// Issue creates a voucher (request: JSON IssueRequest) issued by the
// creator's organization, which must be registered as a bank. It refuses an
// existing id, distributors not registered as such, and an expiry not
// after the transaction's timestamp or more than MaxValidity after it. The
// voucher gets RedemptionPolicy, and the issuer's lane is written so that
// the issuer's own peer must endorse. Emits VoucherIssued.
func (c *Contract) Issue(ctx contractapi.TransactionContextInterface, request string) (string, error) {
	stub := ctx.GetStub()
	var r IssueRequest
	if err := decodeStrict(request, &r); err != nil {
		return "", invalid("issue: %v", err)
	}
	bank, err := c.creatorWithRole(stub, "issue", RoleBank)
	if err != nil {
		return "", err
	}
	if err := checkIssue(&r); err != nil {
		return "", err
	}
	now, err := txTime(stub)
	if err != nil {
		return "", err
	}
	expires := r.ExpiresAt.UTC()
	if !expires.After(now) {
		return "", invalid("issue %s: expires_at %s is not after the transaction time %s", r.ID, expires.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if expires.Sub(now) > MaxValidity {
		return "", invalid("issue %s: expires_at %s is more than %s after the transaction time", r.ID, expires.Format(time.RFC3339), MaxValidity)
	}
	for _, d := range r.Distributors {
		org, err := c.organization(stub, d)
		if err != nil {
			return "", err
		}
		if org == nil || org.Role != RoleDistributor {
			return "", invalid("issue %s: %s is not registered as a distributor", r.ID, d)
		}
	}
	operator, err := c.operator(stub)
	if err != nil {
		return "", err
	}
	if operator == "" {
		return "", conflict("issue %s: no operator is registered to co-endorse redemptions", r.ID)
	}
	key, err := stub.CreateCompositeKey(voucherKey, []string{r.ID})
	if err != nil {
		return "", err
	}
	existing, err := stub.GetState(key)
	if err != nil {
		return "", fmt.Errorf("issue %s: read: %w", r.ID, err)
	}
	if existing != nil {
		return "", conflict("issue %s: a voucher with this id exists", r.ID)
	}
	v := &Voucher{
		ID: r.ID, Status: StatusIssued, Issuer: bank, BankOrg: r.BankOrg, FarmerID: r.FarmerID, LoanID: r.LoanID,
		Amount: r.Amount, Categories: r.Categories, Distributors: r.Distributors, DistributorOrgs: r.DistributorOrgs,
		Region: r.Region, ExpiresAt: expires, IssuedAt: now, IssueTxID: stub.GetTxID(),
	}
	ep, err := RedemptionPolicy(operator, v.Distributors)
	if err != nil {
		return "", err
	}
	if err := c.writeLane(stub, bank, false); err != nil {
		return "", err
	}
	return c.save(stub, key, v, ep, IssuedEvent)
}

// Redeem redeems voucher id once (request: JSON RedeemRequest) for goods
// delivered by the creator's organization, which must be registered as a
// distributor and eligible for the voucher. It refuses a voucher already
// redeemed, a transaction timestamp at or after the expiry (or before the
// issue), goods outside the categories or in another currency, a total
// above the voucher's amount, a distributor organization or region the
// voucher does not name. The voucher then takes SettlementPolicy (the
// issuing bank and Tani), and the
// redeemer's lane is written so that its own peer must endorse (with Tani's,
// which RedemptionPolicy requires). Emits VoucherRedeemed.
func (c *Contract) Redeem(ctx contractapi.TransactionContextInterface, id, request string) (string, error) {
	stub := ctx.GetStub()
	var r RedeemRequest
	if err := decodeStrict(request, &r); err != nil {
		return "", invalid("redeem %s: %v", id, err)
	}
	distributor, err := c.creatorWithRole(stub, "redeem", RoleDistributor)
	if err != nil {
		return "", err
	}
	if err := checkRedeem(&r); err != nil {
		return "", err
	}
	key, v, err := c.load(stub, id)
	if err != nil {
		return "", err
	}
	switch v.Status {
	case StatusRedeemed, StatusSettled:
		return "", conflict("redeem %s: already redeemed in tx %s (delivery %s)", id, v.Redemption.TxID, v.Redemption.DeliveryID)
	}
	now, err := txTime(stub)
	if err != nil {
		return "", err
	}
	if !now.Before(v.ExpiresAt) {
		return "", conflict("redeem %s: expired at %s (transaction time %s)", id, v.ExpiresAt.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if now.Before(v.IssuedAt) {
		return "", invalid("redeem %s: transaction time %s is before the issue at %s", id, now.Format(time.RFC3339Nano), v.IssuedAt.Format(time.RFC3339Nano))
	}
	if len(v.Distributors) > 0 && !slices.Contains(v.Distributors, distributor) {
		return "", forbidden("redeem %s: %s is not an eligible distributor of this voucher (%s)", id, distributor, strings.Join(v.Distributors, ", "))
	}
	if len(v.DistributorOrgs) > 0 && !slices.Contains(v.DistributorOrgs, r.DistributorOrg) {
		return "", forbidden("redeem %s: distributor organization %q is not eligible for this voucher", id, r.DistributorOrg)
	}
	if v.Region != "" && r.Region != v.Region {
		return "", forbidden("redeem %s: delivered in region %q, the voucher is valid in %q", id, r.Region, v.Region)
	}
	var total int64
	for i, g := range r.Goods {
		if !slices.Contains(v.Categories, g.Category) {
			return "", invalid("redeem %s: goods[%d] category %s is outside the voucher's categories (%s)", id, i, g.Category, strings.Join(v.Categories, ", "))
		}
		if g.Amount.Currency != v.Amount.Currency {
			return "", invalid("redeem %s: goods[%d] are priced in %s, the voucher is in %s", id, i, g.Amount.Currency, v.Amount.Currency)
		}
		total += g.Amount.Minor // each ≤ 2^53 and at most MaxListed lines: no overflow
	}
	if total > v.Amount.Minor {
		return "", invalid("redeem %s: goods worth %d exceed the voucher's %s", id, total, v.Amount)
	}
	v.Status = StatusRedeemed
	v.Redemption = &Redemption{
		Distributor: distributor, DistributorOrg: r.DistributorOrg, DeliveryID: r.DeliveryID, LeafIndex: r.LeafIndex,
		ReceiptHash: r.ReceiptHash, Region: r.Region, Goods: r.Goods,
		Amount: Money{Minor: total, Currency: v.Amount.Currency}, RedeemedAt: now, TxID: stub.GetTxID(),
	}
	operator, err := c.operator(stub)
	if err != nil {
		return "", err
	}
	ep, err := SettlementPolicy(v.Issuer, operator)
	if err != nil {
		return "", err
	}
	if err := c.writeLane(stub, distributor, false); err != nil {
		return "", err
	}
	return c.save(stub, key, v, ep, RedeemedEvent)
}

// Settle records that the issuing bank paid the redeemed voucher id to the
// distributor under paymentReference. The creator must be the issuer; a
// voucher not yet redeemed, or already settled, is refused. The voucher
// then takes SettledPolicy. Emits VoucherSettled.
func (c *Contract) Settle(ctx contractapi.TransactionContextInterface, id, paymentReference string) (string, error) {
	stub := ctx.GetStub()
	bank, err := c.creatorWithRole(stub, "settle", RoleBank)
	if err != nil {
		return "", err
	}
	if !referenceRE.MatchString(paymentReference) {
		return "", invalid("settle %s: payment reference %q is not 1 to 128 letters, digits, space or . _ : / # -", id, paymentReference)
	}
	key, v, err := c.load(stub, id)
	if err != nil {
		return "", err
	}
	if v.Issuer != bank {
		return "", forbidden("settle %s: only the issuing bank %s may settle it, not %s", id, v.Issuer, bank)
	}
	switch v.Status {
	case StatusIssued:
		return "", conflict("settle %s: not redeemed yet; a voucher is settled only after its redemption", id)
	case StatusSettled:
		return "", conflict("settle %s: already settled in tx %s (payment %s)", id, v.Settlement.TxID, v.Settlement.PaymentReference)
	}
	now, err := txTime(stub)
	if err != nil {
		return "", err
	}
	if now.Before(v.Redemption.RedeemedAt) {
		return "", invalid("settle %s: transaction time %s is before the redemption at %s", id, now.Format(time.RFC3339Nano), v.Redemption.RedeemedAt.Format(time.RFC3339Nano))
	}
	operator, err := c.operator(stub)
	if err != nil {
		return "", err
	}
	v.Status = StatusSettled
	v.Settlement = &Settlement{PaymentReference: paymentReference, Amount: v.Redemption.Amount, SettledAt: now, TxID: stub.GetTxID()}
	ep, err := SettledPolicy(v.Issuer, operator, v.Redemption.Distributor)
	if err != nil {
		return "", err
	}
	return c.save(stub, key, v, ep, SettledEvent)
}

// GetVoucher returns voucher id as the chain holds it (JSON Voucher).
func (c *Contract) GetVoucher(ctx contractapi.TransactionContextInterface, id string) (string, error) {
	_, v, err := c.load(ctx.GetStub(), id)
	if err != nil {
		return "", err
	}
	return marshal(v)
}

// creatorWithRole returns the creator's MSP ID if the registry gives it
// role, else a forbidden refusal naming what it is.
func (c *Contract) creatorWithRole(stub shim.ChaincodeStubInterface, action, role string) (string, error) {
	mspID, err := cid.GetMSPID(stub)
	if err != nil {
		return "", fmt.Errorf("%s: creator MSP ID: %w", action, err)
	}
	org, err := c.organization(stub, mspID)
	if err != nil {
		return "", err
	}
	switch {
	case org == nil:
		return "", forbidden("%s: %s is not registered for vouchers; only a %s may %s", action, mspID, role, action)
	case org.Role != role:
		return "", forbidden("%s: %s is registered as %s; only a %s may %s", action, mspID, org.Role, role, action)
	}
	return mspID, nil
}

func (c *Contract) organization(stub shim.ChaincodeStubInterface, mspID string) (*Organization, error) {
	key, err := stub.CreateCompositeKey(orgKey, []string{mspID})
	if err != nil {
		return nil, invalid("organization %q: %v", mspID, err)
	}
	b, err := stub.GetState(key)
	if err != nil {
		return nil, fmt.Errorf("read organization %s: %w", mspID, err)
	}
	if b == nil {
		return nil, nil
	}
	var org Organization
	if err := json.Unmarshal(b, &org); err != nil {
		return nil, fmt.Errorf("decode organization %s: %w", mspID, err)
	}
	return &org, nil
}

func (c *Contract) operator(stub shim.ChaincodeStubInterface) (string, error) {
	key, err := stub.CreateCompositeKey(operatorKey, nil)
	if err != nil {
		return "", err
	}
	b, err := stub.GetState(key)
	if err != nil {
		return "", fmt.Errorf("read operator: %w", err)
	}
	return string(b), nil
}

// writeLane writes mspID's lane key. At registration it also sets the
// lane's policy (its own peer); afterwards the write is blind (the lane is
// never read), so only the policy check at commit gives it meaning.
func (c *Contract) writeLane(stub shim.ChaincodeStubInterface, mspID string, create bool) error {
	key, err := stub.CreateCompositeKey(laneKey, []string{mspID})
	if err != nil {
		return err
	}
	if err := stub.PutState(key, []byte(mspID)); err != nil {
		return fmt.Errorf("write lane of %s: %w", mspID, err)
	}
	if !create {
		return nil
	}
	ep, err := AllOf(mspID)
	if err != nil {
		return err
	}
	if err := stub.SetStateValidationParameter(key, ep); err != nil {
		return fmt.Errorf("set lane policy of %s: %w", mspID, err)
	}
	return nil
}

func (c *Contract) load(stub shim.ChaincodeStubInterface, id string) (string, *Voucher, error) {
	if !isUUID(id) {
		return "", nil, invalid("voucher id %q is not a lowercase UUID", id)
	}
	key, err := stub.CreateCompositeKey(voucherKey, []string{id})
	if err != nil {
		return "", nil, err
	}
	b, err := stub.GetState(key)
	if err != nil {
		return "", nil, fmt.Errorf("read voucher %s: %w", id, err)
	}
	if b == nil {
		return "", nil, notFound("voucher %s does not exist", id)
	}
	var v Voucher
	if err := json.Unmarshal(b, &v); err != nil {
		return "", nil, fmt.Errorf("decode voucher %s: %w", id, err)
	}
	return key, &v, nil
}

// save writes v with its new key-level policy and emits event with v.
func (c *Contract) save(stub shim.ChaincodeStubInterface, key string, v *Voucher, policy []byte, event string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode voucher %s: %w", v.ID, err)
	}
	if err := stub.PutState(key, b); err != nil {
		return "", fmt.Errorf("write voucher %s: %w", v.ID, err)
	}
	if err := stub.SetStateValidationParameter(key, policy); err != nil {
		return "", fmt.Errorf("set policy of voucher %s: %w", v.ID, err)
	}
	if err := stub.SetEvent(event, b); err != nil {
		return "", fmt.Errorf("event of voucher %s: %w", v.ID, err)
	}
	return string(b), nil
}

// txTime is the transaction's timestamp, which the client chose and every
// endorser sees alike: the only clock a contract may read.
func txTime(stub shim.ChaincodeStubInterface) (time.Time, error) {
	ts, err := stub.GetTxTimestamp()
	if err != nil {
		return time.Time{}, fmt.Errorf("transaction timestamp: %w", err)
	}
	if ts == nil {
		return time.Time{}, errors.New("transaction has no timestamp")
	}
	return ts.AsTime().UTC(), nil
}

func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request is not the expected JSON: %w", err)
	}
	if dec.More() {
		return errors.New("request has data after its JSON value")
	}
	return nil
}

func putJSON(stub shim.ChaincodeStubInterface, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return stub.PutState(key, b)
}

func marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
