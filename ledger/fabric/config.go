package fabric

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Defaults applied to zero Config fields.
const (
	DefaultChannel             = "tani"
	DefaultChaincode           = "anchor"
	DefaultEvaluateTimeout     = 5 * time.Second
	DefaultEndorseTimeout      = 15 * time.Second
	DefaultSubmitTimeout       = 5 * time.Second
	DefaultCommitStatusTimeout = time.Minute
	DefaultRetries             = 4
)

// Config says how to reach the anchor chaincode: a peer's gateway endpoint,
// the TLS CA that issued its certificate, the client identity's MSP ID,
// certificate and key, and the channel and chaincode names. Pointing Tani at
// a real network changes only these values.
type Config struct {
	// Endpoint is the peer gateway's host:port.
	Endpoint string
	// ServerName overrides the TLS server name (default: Endpoint's host).
	ServerName string
	// TLSCACert is the PEM file of the CA that issued the peer's TLS
	// certificate; empty uses the system roots.
	TLSCACert string
	// Insecure dials without TLS (development only).
	Insecure bool
	// MSPID, Cert and Key are the client identity: its MSP ID, its X.509
	// certificate (PEM) and its private key (a PEM file, or an MSP keystore
	// directory holding exactly one key).
	MSPID string
	Cert  string
	Key   string
	// Channel and Chaincode name where the anchor contract runs.
	Channel   string
	Chaincode string
	// Timeouts bound each gateway call; zero means the default.
	EvaluateTimeout     time.Duration
	EndorseTimeout      time.Duration
	SubmitTimeout       time.Duration
	CommitStatusTimeout time.Duration
	// Retries bounds how often a transient failure (or an MVCC conflict)
	// is retried per step; zero retries nothing (the flag defaults to
	// DefaultRetries).
	Retries int
}

// RegisterFlags registers the client flags, each prefixed with prefix
// (for example "fabric.").
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&c.Endpoint, prefix+"endpoint", "", "peer gateway host:port; empty runs an in-process devnet")
	fs.StringVar(&c.ServerName, prefix+"server-name", "", "TLS server name to verify (default: the endpoint's host)")
	fs.StringVar(&c.TLSCACert, prefix+"tls-ca-cert", "", "PEM file of the CA that issued the peer's TLS certificate")
	fs.BoolVar(&c.Insecure, prefix+"insecure", false, "connect without TLS (development only)")
	fs.StringVar(&c.MSPID, prefix+"msp-id", "", "MSP ID of the client identity")
	fs.StringVar(&c.Cert, prefix+"cert", "", "PEM file of the client identity's certificate")
	fs.StringVar(&c.Key, prefix+"key-file", "", "PEM file (or MSP keystore directory) of the client identity's private key")
	fs.StringVar(&c.Channel, prefix+"channel", DefaultChannel, "channel of the anchor chaincode")
	fs.StringVar(&c.Chaincode, prefix+"chaincode", DefaultChaincode, "name of the anchor chaincode")
	fs.DurationVar(&c.EvaluateTimeout, prefix+"evaluate-timeout", DefaultEvaluateTimeout, "timeout of a query")
	fs.DurationVar(&c.EndorseTimeout, prefix+"endorse-timeout", DefaultEndorseTimeout, "timeout of collecting endorsements")
	fs.DurationVar(&c.SubmitTimeout, prefix+"submit-timeout", DefaultSubmitTimeout, "timeout of handing a transaction to ordering")
	fs.DurationVar(&c.CommitStatusTimeout, prefix+"commit-status-timeout", DefaultCommitStatusTimeout, "timeout of waiting for a transaction to commit")
	fs.IntVar(&c.Retries, prefix+"retries", DefaultRetries, "retries of a transient failure per step")
}

func (c *Config) applyDefaults() error {
	if c.Endpoint == "" {
		return errors.New("fabric: endpoint is required")
	}
	if c.MSPID == "" || c.Cert == "" || c.Key == "" {
		return errors.New("fabric: msp-id, cert and key-file are required")
	}
	if c.Channel == "" {
		c.Channel = DefaultChannel
	}
	if c.Chaincode == "" {
		c.Chaincode = DefaultChaincode
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.EvaluateTimeout, DefaultEvaluateTimeout}, {&c.EndorseTimeout, DefaultEndorseTimeout},
		{&c.SubmitTimeout, DefaultSubmitTimeout}, {&c.CommitStatusTimeout, DefaultCommitStatusTimeout},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	return nil
}

// transportCredentials are TLS with the configured CA, or plaintext.
func (c *Config) transportCredentials() (credentials.TransportCredentials, error) {
	if c.Insecure {
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.TLSCACert != "" {
		pem, err := os.ReadFile(c.TLSCACert)
		if err != nil {
			return nil, fmt.Errorf("fabric: read TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fabric: no certificate in TLS CA file %s", c.TLSCACert)
		}
		tc.RootCAs = pool
	}
	return credentials.NewTLS(tc), nil
}

// loadIdentity reads the client certificate and private key from MSP files.
func (c *Config) loadIdentity() (*identity.X509Identity, identity.Sign, error) {
	certPEM, err := os.ReadFile(c.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: read certificate: %w", err)
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: certificate %s: %w", c.Cert, err)
	}
	id, err := identity.NewX509Identity(c.MSPID, cert)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: identity: %w", err)
	}
	keyPath := c.Key
	if st, err := os.Stat(keyPath); err == nil && st.IsDir() {
		entries, err := os.ReadDir(keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("fabric: read keystore: %w", err)
		}
		var files []string
		for _, e := range entries {
			if !e.IsDir() {
				files = append(files, e.Name())
			}
		}
		if len(files) != 1 {
			return nil, nil, fmt.Errorf("fabric: keystore %s holds %d files, want exactly one key", keyPath, len(files))
		}
		keyPath = filepath.Join(keyPath, files[0])
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: read private key: %w", err)
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: private key %s: %w", keyPath, err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: signer: %w", err)
	}
	return id, sign, nil
}
