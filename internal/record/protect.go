package record

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/tani-platform/tani/internal/pii"
)

// Protected returns a record as it may be stored and journaled for good:
// the canonical record with the farmer's national ID and phone replaced by
// their keyed hashes (national_id_hmac, phone_hmac). It is deterministic, so
// the same record always protects to the same bytes, and a journal leaf
// over it commits to the record without exposing who the farmer is. The
// device signature covers the original; keep that only sealed
// (pii.Keys.Encrypt) where re-verification must stay possible.
func Protected(canonical []byte, keys *pii.Keys) ([]byte, error) {
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(canonical, &rec); err != nil {
		return nil, fmt.Errorf("protect record: %w", err)
	}
	var typ Type
	if err := json.Unmarshal(rec["type"], &typ); err != nil {
		return nil, fmt.Errorf("protect record: type: %w", err)
	}
	if typ != TypeFarmerRegistered {
		return canonical, nil
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(rec["payload"], &payload); err != nil {
		return nil, fmt.Errorf("protect record: payload: %w", err)
	}
	var nationalID, phone string
	if err := json.Unmarshal(payload["national_id"], &nationalID); err != nil {
		return nil, fmt.Errorf("protect record: national_id: %w", err)
	}
	if err := json.Unmarshal(payload["phone"], &phone); err != nil {
		return nil, fmt.Errorf("protect record: phone: %w", err)
	}
	delete(payload, "national_id")
	delete(payload, "phone")
	payload["national_id_hmac"], _ = json.Marshal(hex.EncodeToString(keys.NationalIDHash(nationalID)))
	payload["phone_hmac"], _ = json.Marshal(hex.EncodeToString(keys.PhoneHash(phone)))
	protected, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	rec["payload"] = protected
	out, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return Canonical(out)
}

// ProtectedPayload is the payload member of Protected(r.Canonical): what
// ingest stores as the queryable payload. Only a registration carries
// anything to protect; any other record's payload is already it, and is
// returned without reading the record again.
func (r *Record) ProtectedPayload(keys *pii.Keys) (json.RawMessage, error) {
	if r.Env.Type != TypeFarmerRegistered {
		return r.Env.Payload, nil
	}
	protected, err := Protected(r.Canonical, keys)
	if err != nil {
		return nil, err
	}
	return PayloadOf(protected)
}

// PayloadOf returns the payload member of a canonical record.
func PayloadOf(canonical []byte) (json.RawMessage, error) {
	var rec struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(canonical, &rec); err != nil {
		return nil, fmt.Errorf("record payload: %w", err)
	}
	return rec.Payload, nil
}
