package chaincode

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
)

// ServerConfig is how the chaincode runs as a service (CCaaS): the peer
// connects to Address and names the installed package by CCID.
type ServerConfig struct {
	Address string
	CCID    string
	// TLSDisabled serves plaintext; otherwise Cert and Key (PEM files) are
	// the server's TLS pair and ClientCACert, when set, makes the server
	// require a peer client certificate issued by it.
	TLSDisabled  bool
	Cert, Key    string
	ClientCACert string
}

// ServerConfigFromEnv reads the variables the Fabric CCaaS builder and the
// fabric-samples deployCCAAS script pass: CHAINCODE_SERVER_ADDRESS,
// CHAINCODE_ID, CHAINCODE_TLS_DISABLED, CHAINCODE_TLS_CERT,
// CHAINCODE_TLS_KEY and CHAINCODE_CLIENT_CA_CERT.
func ServerConfigFromEnv(getenv func(string) string) (ServerConfig, error) {
	c := ServerConfig{
		Address: getenv("CHAINCODE_SERVER_ADDRESS"), CCID: getenv("CHAINCODE_ID"),
		Cert: getenv("CHAINCODE_TLS_CERT"), Key: getenv("CHAINCODE_TLS_KEY"), ClientCACert: getenv("CHAINCODE_CLIENT_CA_CERT"),
	}
	if c.Address == "" || c.CCID == "" {
		return c, errors.New("CHAINCODE_SERVER_ADDRESS and CHAINCODE_ID are required")
	}
	if v := getenv("CHAINCODE_TLS_DISABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("CHAINCODE_TLS_DISABLED=%q: %w", v, err)
		}
		c.TLSDisabled = b
	}
	if !c.TLSDisabled && (c.Cert == "" || c.Key == "") {
		return c, errors.New("CHAINCODE_TLS_CERT and CHAINCODE_TLS_KEY are required unless CHAINCODE_TLS_DISABLED=true")
	}
	return c, nil
}

// NewServer returns the anchor chaincode as a chaincode server; Start on it
// serves until the process ends.
func NewServer(c ServerConfig) (*shim.ChaincodeServer, error) {
	cc, err := New()
	if err != nil {
		return nil, err
	}
	return NewServerFor(c, cc)
}

// NewServerFor returns cc (any chaincode, e.g. the vouchers chaincode) as a
// chaincode server configured by c.
func NewServerFor(c ServerConfig, cc shim.Chaincode) (*shim.ChaincodeServer, error) {
	var err error
	tlsProps := shim.TLSProperties{Disabled: c.TLSDisabled}
	if !c.TLSDisabled {
		if tlsProps.Cert, err = os.ReadFile(c.Cert); err != nil {
			return nil, fmt.Errorf("chaincode TLS certificate: %w", err)
		}
		if tlsProps.Key, err = os.ReadFile(c.Key); err != nil {
			return nil, fmt.Errorf("chaincode TLS key: %w", err)
		}
		if c.ClientCACert != "" {
			if tlsProps.ClientCACerts, err = os.ReadFile(c.ClientCACert); err != nil {
				return nil, fmt.Errorf("chaincode client CA: %w", err)
			}
		}
	}
	return &shim.ChaincodeServer{CCID: c.CCID, Address: c.Address, CC: cc, TLSProps: tlsProps}, nil
}
