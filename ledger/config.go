package ledger

import (
	"bytes"
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

	"github.com/tani-platform/tani/internal/keyfile"
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
	fs.StringVar(&c.KeyFile, "ledger.key-file", "", "note signer key file; every process running the ledger must use the same one (`tani keys init`); default <data-dir>/ledger.key, generated only by target all")
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

// SignerKeyKind is the journal's signer key file for a log named origin: a
// note signer key (PRIVATE+KEY+origin+hash+base64) on one line.
func SignerKeyKind(origin string) keyfile.Kind {
	return keyfile.Kind{
		Name: "ledger signing key",
		Flag: "ledger.key-file",
		File: signerKeyName,
		New: func() ([]byte, error) {
			skey, _, err := note.GenerateKey(rand.Reader, origin)
			if err != nil {
				return nil, err
			}
			return []byte(skey + "\n"), nil
		},
		Check: func(data []byte) error {
			_, err := parseSignerKey(data, origin)
			return err
		},
	}
}

// PublicKeyFile is the name of the journal's public key file beside a
// generated signer key: what auditors, banks and distributors verify
// checkpoints and receipts against.
const PublicKeyFile = verifierKeyName

// PublicKey returns the note verifier key of the contents of a signer key
// file, to publish as PublicKeyFile.
func PublicKey(signerKeyFile []byte) (string, error) {
	return verifierKey(strings.TrimSpace(string(signerKeyFile)))
}

// parseSignerKey checks a signer key file without quoting it in errors.
func parseSignerKey(data []byte, origin string) (note.Signer, error) {
	skey := strings.TrimSpace(string(data))
	if _, err := verifierKey(skey); err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, errors.New("not a note signer key")
	}
	if signer.Name() != origin {
		return nil, fmt.Errorf("the key is named %q, but the origin is %q (-ledger.origin)", signer.Name(), origin)
	}
	return signer, nil
}

// loadKeys reads the signer key, or generates a key pair into DataDir when
// no key file is configured and none was generated before. The verifier key
// is always derived from the signer key, so the two cannot drift apart.
func loadKeys(c Config) (note.Signer, note.Verifier, string, error) {
	kind := SignerKeyKind(c.Origin)
	var raw []byte
	var err error
	if c.KeyFile != "" {
		raw, err = keyfile.Load(c.KeyFile, kind)
	} else {
		raw, err = generateKeys(c.DataDir, kind)
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: %w", err)
	}
	signer, err := parseSignerKey(raw, c.Origin)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: %w", err)
	}
	vkey, err := PublicKey(raw)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: %w", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ledger: derived verifier key: %w", err)
	}
	return signer, verifier, vkey, nil
}

// generateKeys loads the signer key from dir, creating it on first start,
// and publishes its public key beside it. Processes starting together end
// up with one key: the first to create the file wins, the others read it.
func generateKeys(dir string, kind keyfile.Kind) ([]byte, error) {
	raw, _, err := keyfile.LoadOrCreate(filepath.Join(dir, signerKeyName), kind)
	if err != nil {
		return nil, err
	}
	vkey, err := PublicKey(raw)
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(dir, verifierKeyName)
	pub := []byte(vkey + "\n")
	err = keyfile.Create(pubPath, pub, 0o644)
	if errors.Is(err, fs.ErrExist) {
		// Written by an earlier start or a racing process: it must be this
		// key's, or auditors would check receipts against the wrong key.
		old, rerr := os.ReadFile(pubPath)
		if rerr != nil {
			return nil, fmt.Errorf("read public key: %w", rerr)
		}
		if !bytes.Equal(bytes.TrimSpace(old), bytes.TrimSpace(pub)) {
			return nil, fmt.Errorf("public key %s is not the public key of %s", pubPath, filepath.Join(dir, signerKeyName))
		}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return raw, nil
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
