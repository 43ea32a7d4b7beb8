package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Config configures the journal. The zero value is not usable; RegisterFlags
// sets the defaults.
type Config struct {
	// Origin names the log; it is the first line of every checkpoint and the
	// name of the signing key.
	Origin string
	// KeyFile holds the note signer key (PRIVATE+KEY+origin+hash+base64).
	// When empty, the key lives in DataDir and is generated on first start.
	KeyFile string
	// DataDir is where a generated key pair is kept.
	DataDir string
	// CheckpointInterval is how often Run signs a new checkpoint while the
	// tree grows.
	CheckpointInterval time.Duration
}

// Default values, also used by RegisterFlags.
const (
	DefaultOrigin             = "tani.local/ledger"
	DefaultCheckpointInterval = 10 * time.Second
)

// RegisterFlags registers the journal's flags with the prefix "ledger.".
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Origin, "ledger.origin", DefaultOrigin, "log origin: first line of every checkpoint and name of the signing key")
	fs.StringVar(&c.KeyFile, "ledger.key-file", "", "note signer key file; empty: generate into the data directory on first run")
	fs.DurationVar(&c.CheckpointInterval, "ledger.checkpoint-interval", DefaultCheckpointInterval, "how often to sign a checkpoint while the log grows")
}

// File names of the generated key pair inside DataDir.
const (
	signerKeyName   = "ledger.key"
	verifierKeyName = "ledger.pub"
)

func (c Config) validate() error {
	if c.Origin == "" || strings.ContainsAny(c.Origin, "\n+ ") {
		return fmt.Errorf("ledger: origin %q must be non-empty without newlines, spaces or '+'", c.Origin)
	}
	if c.KeyFile == "" && c.DataDir == "" {
		return errors.New("ledger: need a key file or a data directory")
	}
	if c.CheckpointInterval <= 0 {
		return fmt.Errorf("ledger: checkpoint interval %v must be positive", c.CheckpointInterval)
	}
	return nil
}

// loadKeys reads the signer key, or generates a key pair into DataDir when
// no key file is configured and none was generated before. The verifier key
// is always derived from the signer key, so the two cannot drift apart.
func loadKeys(c Config) (note.Signer, note.Verifier, string, error) {
	path := c.KeyFile
	if path == "" {
		path = filepath.Join(c.DataDir, signerKeyName)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := generateKeys(c.DataDir, c.Origin); err != nil {
				return nil, nil, "", err
			}
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: read signer key: %w", err)
	}
	skey := strings.TrimSpace(string(raw))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: signer key %s: %w", path, err)
	}
	if signer.Name() != c.Origin {
		return nil, nil, "", fmt.Errorf("ledger: signer key %s is named %q, but the origin is %q", path, signer.Name(), c.Origin)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: signer key %s: %w", path, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: derived verifier key: %w", err)
	}
	return signer, verifier, vkey, nil
}

func generateKeys(dir, origin string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ledger: create data directory: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return fmt.Errorf("ledger: generate key: %w", err)
	}
	// O_EXCL: two processes starting together must not overwrite each
	// other's key; the loser reads the winner's.
	f, err := os.OpenFile(filepath.Join(dir, signerKeyName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: create signer key: %w", err)
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("ledger: write signer key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ledger: write signer key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, verifierKeyName), []byte(vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("ledger: write verifier key: %w", err)
	}
	return nil
}

// verifierKey derives the note verifier key from an Ed25519 note signer key
// ("PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)").
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}
