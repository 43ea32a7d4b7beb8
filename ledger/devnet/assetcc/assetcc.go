package assetcc

import (
	"encoding/json"
	"fmt"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Asset is the value stored under an asset's ID.
type Asset struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Value int    `json:"value"`
}

// Contract is the asset contract.
type Contract struct {
	contractapi.Contract
}

// New returns the chaincode, ready to host.
func New() (*contractapi.ContractChaincode, error) {
	cc, err := contractapi.NewChaincode(&Contract{})
	if err != nil {
		return nil, fmt.Errorf("create asset chaincode: %w", err)
	}
	return cc, nil
}

// Create stores a new asset; it fails if the ID exists.
func (c *Contract) Create(ctx contractapi.TransactionContextInterface, id, owner string, value int) error {
	existing, err := ctx.GetStub().GetState(id)
	if err != nil {
		return fmt.Errorf("read asset %s: %w", id, err)
	}
	if existing != nil {
		return fmt.Errorf("asset %s already exists", id)
	}
	return c.put(ctx, &Asset{ID: id, Owner: owner, Value: value}, "Created")
}

// Read returns the committed asset.
func (c *Contract) Read(ctx contractapi.TransactionContextInterface, id string) (*Asset, error) {
	b, err := ctx.GetStub().GetState(id)
	if err != nil {
		return nil, fmt.Errorf("read asset %s: %w", id, err)
	}
	if b == nil {
		return nil, fmt.Errorf("asset %s does not exist", id)
	}
	var a Asset
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("decode asset %s: %w", id, err)
	}
	return &a, nil
}

// Add adds delta to the asset's value: a read-modify-write.
func (c *Contract) Add(ctx contractapi.TransactionContextInterface, id string, delta int) (*Asset, error) {
	a, err := c.Read(ctx, id)
	if err != nil {
		return nil, err
	}
	a.Value += delta
	return a, c.put(ctx, a, "Added")
}

// Transfer changes the asset's owner.
func (c *Contract) Transfer(ctx contractapi.TransactionContextInterface, id, owner string) error {
	a, err := c.Read(ctx, id)
	if err != nil {
		return err
	}
	a.Owner = owner
	return c.put(ctx, a, "Transferred")
}

// List returns all assets, through a range query.
func (c *Contract) List(ctx contractapi.TransactionContextInterface) ([]*Asset, error) {
	it, err := ctx.GetStub().GetStateByRange("", "")
	if err != nil {
		return nil, fmt.Errorf("range assets: %w", err)
	}
	defer it.Close()
	out := []*Asset{}
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("next asset: %w", err)
		}
		var a Asset
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, fmt.Errorf("decode asset %s: %w", kv.Key, err)
		}
		out = append(out, &a)
	}
	return out, nil
}

func (c *Contract) put(ctx contractapi.TransactionContextInterface, a *Asset, event string) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode asset %s: %w", a.ID, err)
	}
	if err := ctx.GetStub().PutState(a.ID, b); err != nil {
		return fmt.Errorf("write asset %s: %w", a.ID, err)
	}
	if err := ctx.GetStub().SetEvent(event, b); err != nil {
		return fmt.Errorf("set event %s: %w", event, err)
	}
	return nil
}
