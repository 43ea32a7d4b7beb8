package record

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// SigningInput is what a device signs: the RFC 8785 canonical JSON of the
// whole record object without its "signature" member. Members the device
// added are covered too, so nothing can be slipped in beside a signature.
func SigningInput(raw []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("record is not a JSON object: %w", err)
	}
	delete(obj, "signature")
	unsigned, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return Canonical(unsigned)
}

// ErrBadSignature means the signature does not verify under the device key.
var ErrBadSignature = errors.New("signature does not verify with the device's enrolled key")

// Verify checks the record's signature against the device's public key.
func Verify(pub ed25519.PublicKey, raw []byte, signature string) error {
	if _, err := decodeSignature(signature); err != nil {
		return err
	}
	msg, err := SigningInput(raw)
	if err != nil {
		return err
	}
	return verifySignature(pub, msg, signature)
}

// Sign returns the record with its signature member set. It is what the
// field app does; the reference is mobile-api/client.
func Sign(key ed25519.PrivateKey, env Envelope) (Envelope, []byte, error) {
	env.Signature = ""
	raw, err := json.Marshal(env)
	if err != nil {
		return env, nil, err
	}
	msg, err := SigningInput(raw)
	if err != nil {
		return env, nil, err
	}
	env.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
	signed, err := json.Marshal(env)
	return env, signed, err
}
