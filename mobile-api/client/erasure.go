package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Erasure is a farmer's erasure as the operator follows it
// (/admin/v1/farmers/{id}/erasure).
type Erasure struct {
	ErasureID   string    `json:"erasure_id"`
	FarmerID    string    `json:"farmer_id"`
	Reason      string    `json:"reason"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// LeafIndex is the journal entry of the request, once journaled.
	LeafIndex *int64 `json:"leaf_index"`
	Published bool   `json:"published"`
	// State is requested, in_progress or complete.
	State  string               `json:"state"`
	Owners []ErasureOwnerStatus `json:"owners"`
}

// ErasureOwnerStatus is how far one owner of farmer data has got.
type ErasureOwnerStatus struct {
	Owner       string          `json:"owner"`
	State       string          `json:"state"` // pending, in_progress, complete
	StartedAt   *time.Time      `json:"started_at"`
	CompletedAt *time.Time      `json:"completed_at"`
	Attempts    int             `json:"attempts"`
	LastError   *string         `json:"last_error"`
	Erased      json.RawMessage `json:"erased"`
}

// Complete reports whether every owner has erased the farmer's data.
func (e Erasure) Complete() bool { return e.State == "complete" }

// EraseFarmer asks Tani to forget a farmer. Reason and requestedBy are
// journaled, public to every auditor: name the legal ground and the
// ticket, never the farmer. Asking again for the same farmer returns the
// erasure already under way.
func (a *Admin) EraseFarmer(ctx context.Context, farmerID, reason, requestedBy string) (Erasure, error) {
	var out Erasure
	err := do(ctx, a.http, http.MethodPost, a.base+"/admin/v1/farmers/"+url.PathEscape(farmerID)+"/erasure", a.token,
		map[string]string{"reason": reason, "requested_by": requestedBy}, &out)
	return out, err
}

// FarmerErasure returns the erasure of a farmer and every owner's progress.
func (a *Admin) FarmerErasure(ctx context.Context, farmerID string) (Erasure, error) {
	var out Erasure
	err := do(ctx, a.http, http.MethodGet, a.base+"/admin/v1/farmers/"+url.PathEscape(farmerID)+"/erasure", a.token, nil, &out)
	return out, err
}
