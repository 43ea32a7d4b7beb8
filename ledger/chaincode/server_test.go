package chaincode_test

import (
	"strings"
	"testing"

	"github.com/tani-platform/tani/ledger/chaincode"
)

func TestServerConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"OK", map[string]string{"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": "anchor:abc", "CHAINCODE_TLS_CERT": "c", "CHAINCODE_TLS_KEY": "k"}, ""},
		{"OKPlaintext", map[string]string{"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": "anchor:abc", "CHAINCODE_TLS_DISABLED": "true"}, ""},
		{"ErrNoAddress", map[string]string{"CHAINCODE_ID": "anchor:abc"}, "CHAINCODE_SERVER_ADDRESS and CHAINCODE_ID are required"},
		{"ErrNoTLSPair", map[string]string{"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": "anchor:abc"}, "CHAINCODE_TLS_CERT and CHAINCODE_TLS_KEY are required"},
		{"ErrBadBool", map[string]string{"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": "anchor:abc", "CHAINCODE_TLS_DISABLED": "maybe"}, "CHAINCODE_TLS_DISABLED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chaincode.ServerConfigFromEnv(func(k string) string { return tc.env[k] })
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewServer(t *testing.T) {
	t.Run("OKPlaintext", func(t *testing.T) {
		srv, err := chaincode.NewServer(chaincode.ServerConfig{Address: "127.0.0.1:0", CCID: "anchor:abc", TLSDisabled: true})
		if err != nil {
			t.Fatal(err)
		}
		if srv.CCID != "anchor:abc" || srv.CC == nil || !srv.TLSProps.Disabled {
			t.Errorf("got server %+v, want CCID anchor:abc hosting the contract in plaintext", srv)
		}
	})
	t.Run("ErrMissingTLSFiles", func(t *testing.T) {
		_, err := chaincode.NewServer(chaincode.ServerConfig{Address: "127.0.0.1:0", CCID: "anchor:abc", Cert: "/nonexistent/tls.crt", Key: "/nonexistent/tls.key"})
		if err == nil || !strings.Contains(err.Error(), "chaincode TLS certificate") {
			t.Errorf("got %v, want the missing certificate named", err)
		}
	})
}
