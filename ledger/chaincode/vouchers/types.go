package vouchers

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Chaincode event names. Each state change emits exactly one, whose
// payload is the voucher (JSON Voucher) as the transaction left it.
const (
	IssuedEvent   = "VoucherIssued"
	RedeemedEvent = "VoucherRedeemed"
	SettledEvent  = "VoucherSettled"
)

// Voucher states, in the only order they are reached.
const (
	StatusIssued   = "issued"
	StatusRedeemed = "redeemed"
	StatusSettled  = "settled"
)

// Organization roles the registry knows.
const (
	// RoleOperator is Tani: it co-endorses every redemption.
	RoleOperator = "operator"
	// RoleBank issues and settles vouchers.
	RoleBank = "bank"
	// RoleDistributor redeems vouchers against deliveries.
	RoleDistributor = "distributor"
)

// Input categories a voucher may be spent on. The set is closed so that a
// misspelt category ("fertiliser") cannot make a voucher unspendable; a new
// category is a chaincode upgrade.
const (
	CategorySeed           = "seed"
	CategoryFertilizer     = "fertilizer"
	CategoryCropProtection = "crop_protection"
	CategoryTools          = "tools"
	CategoryIrrigation     = "irrigation"
	CategoryMechanization  = "mechanization"
)

// ValidPaymentReference reports whether ref is a payment reference Settle
// accepts: 1 to 128 letters, digits, space or . _ : / # - (starting with a
// letter or digit), so that a caller can refuse a bad one before asking
// the chain.
func ValidPaymentReference(ref string) bool { return referenceRE.MatchString(ref) }

// Categories lists every input category, in a fixed order.
func Categories() []string {
	return []string{CategorySeed, CategoryFertilizer, CategoryCropProtection, CategoryTools, CategoryIrrigation, CategoryMechanization}
}

// Limits the contract enforces.
const (
	// MaxMinor bounds amounts in minor units: 2^53-1, the largest integer
	// every JSON reader (JavaScript's included) holds exactly.
	MaxMinor = 1<<53 - 1
	// MaxValidity is the longest a voucher may be valid after its issue.
	MaxValidity = 5 * 366 * 24 * time.Hour
	// MaxListed bounds the categories, distributors, organizations and
	// goods lines a voucher or redemption may list.
	MaxListed = 64
)

// Money is an amount in the currency's minor units (cents, sen, rupiah)
// and its ISO 4217 code.
type Money struct {
	Minor    int64  `json:"minor"`
	Currency string `json:"currency"`
}

func (m Money) String() string { return fmt.Sprintf("%d %s (minor units)", m.Minor, m.Currency) }

// Voucher is a voucher as the chain keeps it and as every event carries
// it.
type Voucher struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Issuer is the MSP ID of the issuing bank (the creator of the issue).
	Issuer string `json:"issuer"`
	// BankOrg is the issuing bank's Tani organization id, when given.
	BankOrg  string `json:"bank_org,omitempty"`
	FarmerID string `json:"farmer_id"`
	LoanID   string `json:"loan_id"`
	Amount   Money  `json:"amount"`
	// Categories are the input categories the voucher may buy.
	Categories []string `json:"categories"`
	// Distributors are the MSP IDs of the distributors that may redeem it;
	// empty means any organization registered as a distributor.
	Distributors []string `json:"distributors,omitempty"`
	// DistributorOrgs, when set, narrows redemption to these Tani
	// organization ids (agro-dealers) inside those MSPs.
	DistributorOrgs []string `json:"distributor_orgs,omitempty"`
	// Region, when set, is where the goods must be delivered.
	Region string `json:"region,omitempty"`
	// ExpiresAt is the first instant at which the voucher no longer
	// redeems.
	ExpiresAt time.Time `json:"expires_at"`
	// IssuedAt is the issue transaction's timestamp.
	IssuedAt   time.Time   `json:"issued_at"`
	IssueTxID  string      `json:"issue_tx_id"`
	Redemption *Redemption `json:"redemption,omitempty"`
	Settlement *Settlement `json:"settlement,omitempty"`
}

// Redemption is the one redemption of a voucher: who redeemed it, against
// which delivery, for which goods.
type Redemption struct {
	// Distributor is the redeeming MSP ID (the creator of the redemption).
	Distributor    string `json:"distributor"`
	DistributorOrg string `json:"distributor_org,omitempty"`
	// DeliveryID is the delivery record (delivery.confirmed) the goods
	// were received under; LeafIndex is its entry in Tani's journal and
	// ReceiptHash the SHA-256 (hex) of its receipt, so that anyone can
	// check the delivery against the journal and its Fabric anchors.
	DeliveryID  string    `json:"delivery_id"`
	LeafIndex   uint64    `json:"leaf_index"`
	ReceiptHash string    `json:"receipt_hash"`
	Region      string    `json:"region,omitempty"`
	Goods       []Goods   `json:"goods"`
	Amount      Money     `json:"amount"`
	RedeemedAt  time.Time `json:"redeemed_at"`
	TxID        string    `json:"tx_id"`
}

// Goods is one line of a delivery paid by the voucher: its category and
// its value.
type Goods struct {
	Category string `json:"category"`
	Amount   Money  `json:"amount"`
}

// Settlement is the bank's payment of a redeemed voucher.
type Settlement struct {
	PaymentReference string    `json:"payment_reference"`
	Amount           Money     `json:"amount"`
	SettledAt        time.Time `json:"settled_at"`
	TxID             string    `json:"tx_id"`
}

// Organization is a registry entry: the role an MSP plays for vouchers.
type Organization struct {
	MSPID string `json:"msp_id"`
	Role  string `json:"role"`
	// RegisteredBy is the MSP ID of the administrator who registered it.
	RegisteredBy string `json:"registered_by"`
	TxID         string `json:"tx_id"`
}

// IssueRequest is the argument of Issue (JSON).
type IssueRequest struct {
	ID              string    `json:"id"`
	BankOrg         string    `json:"bank_org,omitempty"`
	FarmerID        string    `json:"farmer_id"`
	LoanID          string    `json:"loan_id"`
	Amount          Money     `json:"amount"`
	Categories      []string  `json:"categories"`
	Distributors    []string  `json:"distributors,omitempty"`
	DistributorOrgs []string  `json:"distributor_orgs,omitempty"`
	Region          string    `json:"region,omitempty"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// RedeemRequest is the argument of Redeem (JSON): the verified delivery
// the voucher pays for.
type RedeemRequest struct {
	DistributorOrg string  `json:"distributor_org,omitempty"`
	DeliveryID     string  `json:"delivery_id"`
	LeafIndex      uint64  `json:"leaf_index"`
	ReceiptHash    string  `json:"receipt_hash"`
	Region         string  `json:"region,omitempty"`
	Goods          []Goods `json:"goods"`
}

var (
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
	hashRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// regionRE: a region or district code or name, e.g. ID-JB or
	// "Kabupaten Garut".
	regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,63}$`)
	// mspRE: MSP IDs as Fabric writes them.
	mspRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// referenceRE: a bank's payment reference.
	referenceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._:/#-]{0,127}$`)
)

const nilUUID = "00000000-0000-0000-0000-000000000000"

func isUUID(s string) bool { return uuidRE.MatchString(s) && s != nilUUID }

func isCategory(s string) bool { return slices.Contains(Categories(), s) }

// checkMoney validates an amount: positive, at most MaxMinor, ISO 4217
// code.
func checkMoney(field string, m Money) error {
	if !currencyRE.MatchString(m.Currency) {
		return invalid("%s.currency %q is not an ISO 4217 code (three capital letters)", field, m.Currency)
	}
	if m.Minor <= 0 || m.Minor > MaxMinor {
		return invalid("%s.minor must be from 1 to %d, got %d", field, int64(MaxMinor), m.Minor)
	}
	return nil
}

// checkIssue validates an issue request on its own; what depends on the
// chain (registry, existing voucher, time) is checked by Issue.
func checkIssue(r *IssueRequest) error {
	if !isUUID(r.ID) {
		return invalid("id %q is not a lowercase UUID", r.ID)
	}
	if r.BankOrg != "" && !isUUID(r.BankOrg) {
		return invalid("bank_org %q is not a lowercase UUID", r.BankOrg)
	}
	if !isUUID(r.FarmerID) {
		return invalid("farmer_id %q is not a lowercase UUID", r.FarmerID)
	}
	if !isUUID(r.LoanID) {
		return invalid("loan_id %q is not a lowercase UUID", r.LoanID)
	}
	if err := checkMoney("amount", r.Amount); err != nil {
		return err
	}
	if len(r.Categories) == 0 || len(r.Categories) > MaxListed {
		return invalid("categories must list 1 to %d input categories (%v)", MaxListed, Categories())
	}
	for i, c := range r.Categories {
		if !isCategory(c) {
			return invalid("categories[%d] %q is not an input category (%v)", i, c, Categories())
		}
		if slices.Index(r.Categories, c) != i {
			return invalid("categories[%d] %q is listed twice", i, c)
		}
	}
	if len(r.Distributors) > MaxListed {
		return invalid("distributors lists more than %d MSP IDs", MaxListed)
	}
	for i, d := range r.Distributors {
		if !mspRE.MatchString(d) {
			return invalid("distributors[%d] %q is not an MSP ID", i, d)
		}
		if slices.Index(r.Distributors, d) != i {
			return invalid("distributors[%d] %q is listed twice", i, d)
		}
	}
	if len(r.DistributorOrgs) > MaxListed {
		return invalid("distributor_orgs lists more than %d organizations", MaxListed)
	}
	for i, o := range r.DistributorOrgs {
		if !isUUID(o) {
			return invalid("distributor_orgs[%d] %q is not a lowercase UUID", i, o)
		}
		if slices.Index(r.DistributorOrgs, o) != i {
			return invalid("distributor_orgs[%d] %q is listed twice", i, o)
		}
	}
	if r.Region != "" && !regionRE.MatchString(r.Region) {
		return invalid("region %q is not a region code or name (letters, digits, space . _ : / -; at most 64)", r.Region)
	}
	if r.ExpiresAt.IsZero() {
		return invalid("expires_at is required")
	}
	return nil
}

// checkRedeem validates a redemption request on its own.
func checkRedeem(r *RedeemRequest) error {
	if r.DistributorOrg != "" && !isUUID(r.DistributorOrg) {
		return invalid("distributor_org %q is not a lowercase UUID", r.DistributorOrg)
	}
	if !isUUID(r.DeliveryID) {
		return invalid("delivery_id %q is not a lowercase UUID", r.DeliveryID)
	}
	if !hashRE.MatchString(r.ReceiptHash) {
		return invalid("receipt_hash %q is not a SHA-256 in lowercase hex", r.ReceiptHash)
	}
	if r.Region != "" && !regionRE.MatchString(r.Region) {
		return invalid("region %q is not a region code or name", r.Region)
	}
	if len(r.Goods) == 0 || len(r.Goods) > MaxListed {
		return invalid("goods must list 1 to %d lines", MaxListed)
	}
	for i, g := range r.Goods {
		if !isCategory(g.Category) {
			return invalid("goods[%d].category %q is not an input category (%v)", i, g.Category, Categories())
		}
		if err := checkMoney(fmt.Sprintf("goods[%d].amount", i), g.Amount); err != nil {
			return err
		}
	}
	return nil
}
