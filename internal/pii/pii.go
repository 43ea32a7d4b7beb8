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
	"os"
	"path/filepath"
	"strings"
)

// Config locates the key file.
type Config struct {
	KeyFile string
}

// RegisterFlags registers the pii.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.KeyFile, "pii.key-file", "", "64-byte hex key protecting national IDs and phones; default <data-dir>/pii.key, generated if missing")
}

// Keys hold the HMAC and encryption keys.
type Keys struct {
	mac  []byte
	aead cipher.AEAD
}

// Load reads the key, generating it under dataDir if missing.
func Load(cfg Config, dataDir string) (*Keys, error) {
	path := cfg.KeyFile
	if path == "" {
		path = filepath.Join(dataDir, "pii.key")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && cfg.KeyFile == "" {
		key := make([]byte, 64)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create pii key: %w", err)
		}
		fmt.Fprintln(f, hex.EncodeToString(key))
		if err := f.Close(); err != nil {
			return nil, err
		}
		return New(key)
	}
	if err != nil {
		return nil, fmt.Errorf("read pii key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("pii key %s: not hex: %w", path, err)
	}
	return New(key)
}

// New builds keys from 64 bytes: 32 for the HMAC, 32 for AES-256.
func New(key []byte) (*Keys, error) {
	if len(key) != 64 {
		return nil, fmt.Errorf("pii key must be 64 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key[32:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keys{mac: key[:32], aead: aead}, nil
}

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
