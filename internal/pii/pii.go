// Package pii protects farmers' personal data at rest: national IDs are
// kept only as a keyed HMAC (enough to find duplicates, useless to a thief
// without the key), phone numbers are encrypted with AES-256-GCM. The key
// is a platform secret shared by the services that need it. It must never
// log or return a clear value it did not decrypt on purpose.
package pii

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/tani-platform/tani/internal/keyfile"
)

// Config locates the key file.
type Config struct {
	KeyFile string
}

// RegisterFlags registers the pii.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.KeyFile, "pii.key-file", "", "PII key file (64 bytes in hex) protecting national IDs and phones; every process must use the same one (`tani keys init`); default <data-dir>/pii.key, generated only by target all")
}

// Keys hold the HMAC and encryption keys.
type Keys struct {
	mac  []byte
	aead cipher.AEAD
	id   string
}

// KeyKind is the PII key file: 64 random bytes in hex on one line.
var KeyKind = keyfile.Kind{
	Name: "PII key",
	Flag: "pii.key-file",
	File: "pii.key",
	New: func() ([]byte, error) {
		key := make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(key) + "\n"), nil
	},
	Check: func(data []byte) error {
		_, err := decodeKey(data)
		return err
	},
}

// KeySize is the length of the PII key in bytes.
const KeySize = 64

// Parse builds keys from the contents of a PII key file (KeyKind).
func Parse(data []byte) (*Keys, error) {
	key, err := decodeKey(data)
	if err != nil {
		return nil, err
	}
	return New(key)
}

// decodeKey reads a key file's hex without ever quoting it in an error.
func decodeKey(data []byte) ([]byte, error) {
	text := strings.TrimSpace(string(data))
	if len(text) != 2*KeySize {
		return nil, fmt.Errorf("want %d hex digits on one line, found %d characters", 2*KeySize, len(text))
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		return nil, errors.New("not hexadecimal")
	}
	return key, nil
}

// New builds keys from 64 bytes: 32 for the HMAC, 32 for AES-256.
func New(key []byte) (*Keys, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("pii key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key[32:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(append([]byte("tani.pii/key-id\x00"), key...))
	return &Keys{mac: key[:32], aead: aead, id: hex.EncodeToString(id[:16])}, nil
}

// ID is a fingerprint of the key, safe to store and show: processes with
// the same key have the same ID, and it reveals nothing of the key.
func (k *Keys) ID() string { return k.id }

// NationalIDHash is the keyed hash under which a national ID is stored.
// Spaces and case are ignored so the same ID typed twice matches.
func (k *Keys) NationalIDHash(id string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(strings.ToUpper(strings.Join(strings.Fields(id), ""))))
	return m.Sum(nil)
}

// PhoneHash is a keyed hash of a phone number, for duplicate checks.
func (k *Keys) PhoneHash(phone string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte("phone:" + phone))
	return m.Sum(nil)
}

// Encrypt seals a value; the nonce is stored in front of the ciphertext.
func (k *Keys) Encrypt(clear string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return k.aead.Seal(nonce, nonce, []byte(clear), nil)
}

// Decrypt opens a value sealed by Encrypt.
func (k *Keys) Decrypt(sealed []byte) (string, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed value too short")
	}
	clear, err := k.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", fmt.Errorf("decrypt: %w", err)
	}
	return string(clear), nil
}

// Derive returns a key for another purpose (e.g. encrypting the embedded
// JetStream store), so one secret protects all personal data at rest.
func (k *Keys) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte("derive:" + purpose))
	return m.Sum(nil)
}
