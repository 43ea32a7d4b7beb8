package app

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/keyfile"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
)

// keys are secrets several modules use, loaded once, by the first module
// that needs them.
type keys struct {
	authOnce sync.Once
	auth     *auth.Keys
	authErr  error

	piiOnce sync.Once
	pii     *pii.Keys
	piiErr  error

	operatorOnce sync.Once
	operator     string
	operatorErr  error

	adminOnce sync.Once
	admin     *echo.Group

	// directory checks operator users' tokens on /admin/v1: the identity
	// module's, or one made on first use in a process without it.
	dirMu     sync.Mutex
	directory *identity.Directory

	// used are the fingerprints of the shared keys this process loaded,
	// held against the deployment's once the database is open.
	used []keyID
}

// keyID is a shared key's name and fingerprint.
type keyID struct{ name, id string }

//go:embed migrations/*.sql
var deploymentFS embed.FS

// deploymentMigrations create deployment.keys: the fingerprints of the
// shared keys, as the first process that used the database had them.
var deploymentMigrations = postgres.Migrations{Name: "deployment", FS: postgres.MustSub(deploymentFS, "migrations")}

// useKey records that this process uses a shared key and, once the
// database is open, refuses it if it is not the deployment's.
func (a *App) useKey(name, id string) error {
	a.keys.used = append(a.keys.used, keyID{name, id})
	if a.pool == nil {
		return nil // checkKeys runs when the postgres module starts
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.checkKey(ctx, keyID{name, id})
}

// checkKeys holds every key loaded so far against the deployment's.
func (a *App) checkKeys(ctx context.Context) error {
	for _, k := range a.keys.used {
		if err := a.checkKey(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// checkKey records k's fingerprint if the deployment has none for its name
// yet, and otherwise requires it to be the recorded one: a process with
// another key would hash national IDs, seal phones or sign tokens and
// checkpoints that the other processes cannot match, decrypt or verify.
func (a *App) checkKey(ctx context.Context, k keyID) error {
	for range 3 { // a racing first insert may be invisible to this statement's snapshot: ask again
		var recorded string
		err := a.pool.QueryRow(ctx, `
			WITH ins AS (
				INSERT INTO deployment.keys (name, key_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING key_id
			)
			SELECT key_id FROM ins UNION ALL SELECT key_id FROM deployment.keys WHERE name = $1`, k.name, k.id).Scan(&recorded)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check the %s against the deployment's: %w", k.name, err)
		}
		if recorded != k.id {
			return fmt.Errorf("%s: this process has key %s, but this deployment's database was first used with key %s: "+
				"every process must be given the same key file (`tani keys init`); "+
				"after a deliberate rotation, delete its row from deployment.keys", k.name, k.id, recorded)
		}
		return nil
	}
	return fmt.Errorf("check the %s against the deployment's: no recorded key id after 3 attempts", k.name)
}

func (a *App) authKeys() (*auth.Keys, error) {
	a.keys.authOnce.Do(func() {
		data, err := a.sharedSecret(auth.SigningKeyKind, a.cfg.Auth.SigningKeyFile)
		if err != nil {
			a.keys.authErr = err
			return
		}
		k, err := auth.New(a.cfg.Auth, data)
		if err == nil {
			err = a.useKey(auth.SigningKeyKind.Name, k.ID())
		}
		a.keys.auth, a.keys.authErr = k, err
	})
	return a.keys.auth, a.keys.authErr
}

func (a *App) piiKeys() (*pii.Keys, error) {
	a.keys.piiOnce.Do(func() {
		data, err := a.sharedSecret(pii.KeyKind, a.cfg.PII.KeyFile)
		if err != nil {
			a.keys.piiErr = err
			return
		}
		k, err := pii.Parse(data)
		if err == nil {
			err = a.useKey(pii.KeyKind.Name, k.ID())
		}
		a.keys.pii, a.keys.piiErr = k, err
	})
	return a.keys.pii, a.keys.piiErr
}

// operatorToken is the /admin/v1 bearer token: -auth.operator-token, or
// the operator token file.
func (a *App) operatorToken() (string, error) {
	a.keys.operatorOnce.Do(func() {
		cfg := a.cfg.Auth
		switch {
		case cfg.OperatorToken != "" && cfg.OperatorTokenFile != "":
			a.keys.operatorErr = errors.New("operator token: set -auth.operator-token or -auth.operator-token-file, not both")
		case cfg.OperatorToken != "":
			token, err := auth.ParseOperatorToken([]byte(cfg.OperatorToken))
			if err != nil {
				a.keys.operatorErr = fmt.Errorf("operator token (-auth.operator-token): %w", err)
				return
			}
			a.keys.operator = token
		default:
			data, err := a.sharedSecret(auth.OperatorTokenKind, cfg.OperatorTokenFile)
			if err != nil {
				a.keys.operatorErr = err
				return
			}
			a.keys.operator, a.keys.operatorErr = auth.ParseOperatorToken(data)
		}
	})
	return a.keys.operator, a.keys.operatorErr
}

// adminGroup is /admin/v1, guarded by the operator token, shared by the
// modules that offer administration.
func (a *App) adminGroup() (*echo.Group, error) {
	token, err := a.operatorToken()
	if err != nil {
		return nil, err
	}
	a.keys.adminOnce.Do(func() {
		a.keys.admin = a.server.Echo.Group("/admin/v1", identity.RequireOperator(token, a.operatorDirectory))
	})
	return a.keys.admin, nil
}

// setDirectory records the identity module's directory.
func (a *App) setDirectory(d *identity.Directory) {
	a.keys.dirMu.Lock()
	defer a.keys.dirMu.Unlock()
	a.keys.directory = d
}

// operatorDirectory is the directory that checks operator users' bearer
// tokens on /admin/v1. A process without the identity module (a split
// attest, say) still accepts them: the sessions are in Postgres. Without
// Postgres there is none, and only the bootstrap token works.
func (a *App) operatorDirectory() *identity.Directory {
	a.keys.dirMu.Lock()
	defer a.keys.dirMu.Unlock()
	if a.keys.directory == nil && a.pool != nil {
		d, err := identity.New(a.cfg.Identity, identity.Deps{Pool: a.pool, Logger: a.logger.With("module", Identity)})
		if err != nil {
			a.logger.Error("operator sessions cannot be checked", "err", err)
			return nil
		}
		a.keys.directory = d
	}
	return a.keys.directory
}

// ledgerPayloadReaders is who may read the journal's payloads (records'
// histories): operators (the bootstrap token or an operator user), and
// banks and distributors through the consent gate — the record's farmer
// must have a live consent naming the caller's organization for the
// record's scope (a plot.mapped needs plots), the read is logged in the
// access log and done in the gate's transaction.
func (a *App) ledgerPayloadReaders() (ledger.PayloadAuthorizer, error) {
	token, err := a.operatorToken()
	if err != nil {
		return nil, err
	}
	operator := identity.RequireOperator(token, a.operatorDirectory)
	return func(c echo.Context, recordID string, read func(context.Context, pgx.Tx) error) error {
		bearer, _ := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		_, cookie := c.Cookie(identity.SessionCookie)
		if !identity.IsAPIKey(strings.TrimSpace(bearer)) && !(bearer == "" && cookie == nil) {
			return operator(func(c echo.Context) error { return read(c.Request().Context(), nil) })(c)
		}
		dir := a.operatorDirectory()
		if dir == nil {
			return apperr.Errorf(apperr.Unavailable, "this process cannot check organizations' credentials")
		}
		p, err := dir.Caller(c)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		var typ, farmer string
		err = a.pool.QueryRow(ctx, `SELECT type, coalesce(payload->>'farmer_id', '') FROM ingest.submissions WHERE id::text = $1`, recordID).Scan(&typ, &farmer)
		if errors.Is(err, pgx.ErrNoRows) {
			return consent.Denied // the same answer as a refused read: no probing for records
		}
		if err != nil {
			return fmt.Errorf("look up record %s: %w", recordID, err)
		}
		scope, ok := consent.ScopeOf(record.Type(typ))
		if !ok {
			return consent.Denied
		}
		access := consent.Access{FarmerID: farmer, Scopes: []consent.Scope{scope}, Purpose: "journal history of record " + recordID,
			RequestID: c.Response().Header().Get(echo.HeaderXRequestID), ReadOnly: true}
		return consent.NewGate(a.pool).WithDurableLog(a.cfg.Consent.DurableAccessLog).Read(ctx, p, access, func(ctx context.Context, tx pgx.Tx, _ consent.Grant) error {
			return read(ctx, tx)
		})
	}, nil
}

// mayCreateKeys reports whether this process may generate a missing shared
// secret into its data directory: only target all, a process that is the
// whole deployment. A process of a split deployment that made its own key
// would silently disagree with the others — national IDs hashed under
// different keys, tokens signed by one process that another rejects — so
// it must be given the deployment's files instead.
func (a *App) mayCreateKeys() bool { return slices.Contains(a.cfg.Targets(), All) }

// sharedSecret loads a secret every process of a deployment shares: the
// file its flag names (which must exist), or — only in a process running
// target all — its file in the data directory, created on first start.
func (a *App) sharedSecret(k keyfile.Kind, file string) ([]byte, error) {
	if file != "" {
		return keyfile.Load(file, k)
	}
	if !a.mayCreateKeys() {
		return nil, a.missingSecret(k)
	}
	path := filepath.Join(a.cfg.DataDir, k.File)
	data, created, err := keyfile.LoadOrCreate(path, k)
	if err != nil {
		return nil, err
	}
	if created {
		a.logger.Info("generated a key for this single-process deployment", "key", k.Name, "file", path)
	}
	return data, nil
}

// missingSecret is the refusal of a split process that was not told where
// a shared secret is.
func (a *App) missingSecret(k keyfile.Kind) error {
	flag := "-" + k.Flag
	if k.Flag == auth.OperatorTokenKind.Flag {
		flag = "-auth.operator-token-file (or -auth.operator-token)"
	}
	return fmt.Errorf("%s: %s is not set, and only target all generates keys: this process runs %q, and a key of its own would differ from the other processes'. "+
		"Create the deployment's keys once with `tani keys init DIR` and start every process with the flags it prints (here %s=DIR/%s)",
		k.Name, flag, a.cfg.Target, "-"+k.Flag, k.File)
}

// ledgerConfig is the journal's configuration: its signer key file as
// given, or — only in a process running target all — generated into the
// data directory.
func (a *App) ledgerConfig() (ledger.Config, error) {
	cfg := a.cfg.Ledger
	if cfg.KeyFile != "" {
		return cfg, nil
	}
	if !a.mayCreateKeys() {
		return cfg, a.missingSecret(ledger.SignerKeyKind(cfg.Origin))
	}
	cfg.DataDir = a.cfg.DataDir
	return cfg, nil
}

// SharedKeys lists the secrets every process of a deployment must share,
// for a journal named origin, in the order `tani keys init` creates them.
func SharedKeys(origin string) []keyfile.Kind {
	return []keyfile.Kind{pii.KeyKind, auth.SigningKeyKind, auth.OperatorTokenKind, ledger.SignerKeyKind(origin)}
}

// KeySet is a directory of a deployment's shared secrets.
type KeySet struct {
	Dir       string
	Origin    string
	PublicKey string // path of the journal's public key file
}

// Flags returns the `tani up` flags that point a process at the set.
func (s KeySet) Flags() []string {
	var out []string
	for _, k := range SharedKeys(s.Origin) {
		out = append(out, "-"+k.Flag+"="+filepath.Join(s.Dir, k.File))
	}
	return append(out, "-ledger.origin="+s.Origin)
}

// InitKeys creates every shared secret of a deployment in dir (mode 0600;
// the directory 0700) and the journal's public key beside them. Unless
// overwrite is set, it refuses before writing anything when one of the
// files exists: replacing a key in use makes every phone encrypted under
// it unreadable and every token and checkpoint signed with it worthless.
func InitKeys(dir, origin string, overwrite bool) (KeySet, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return KeySet{}, err
	}
	if strings.ContainsAny(origin, "\n+ ") || origin == "" {
		return KeySet{}, fmt.Errorf("ledger origin %q must be non-empty without newlines, spaces or '+'", origin)
	}
	set := KeySet{Dir: abs, Origin: origin, PublicKey: filepath.Join(abs, ledger.PublicKeyFile)}
	kinds := SharedKeys(origin)
	if !overwrite {
		var existing []string
		for _, name := range append(fileNames(kinds), ledger.PublicKeyFile) {
			if _, err := os.Lstat(filepath.Join(abs, name)); err == nil {
				existing = append(existing, name)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return KeySet{}, err
			}
		}
		if len(existing) > 0 {
			return KeySet{}, fmt.Errorf("%s already holds %s: refusing to replace keys that may be in use (pass -overwrite to replace them)",
				abs, strings.Join(existing, ", "))
		}
	}
	write := keyfile.Create
	if overwrite {
		write = keyfile.Replace
	}
	var ledgerKey []byte
	ledgerFlag := ledger.SignerKeyKind(origin).Flag
	for _, k := range kinds {
		data, err := k.New()
		if err != nil {
			return KeySet{}, fmt.Errorf("%s: generate: %w", k.Name, err)
		}
		if err := write(filepath.Join(abs, k.File), data, keyfile.SecretPerm); err != nil {
			return KeySet{}, fmt.Errorf("%s: %w", k.Name, err)
		}
		if k.Flag == ledgerFlag {
			ledgerKey = data
		}
	}
	vkey, err := ledger.PublicKey(ledgerKey)
	if err != nil {
		return KeySet{}, err
	}
	if err := write(set.PublicKey, []byte(vkey+"\n"), 0o644); err != nil {
		return KeySet{}, fmt.Errorf("ledger public key: %w", err)
	}
	return set, nil
}

func fileNames(kinds []keyfile.Kind) []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.File
	}
	return out
}
