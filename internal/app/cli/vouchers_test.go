package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/ledger/devnet/devnettest"
)

func TestVouchersCommand(t *testing.T) {
	v := devnettest.MustVouchers(t, nil)
	admin, err := v.Net.Identity("BankMSP", "admin")
	if err != nil {
		t.Fatal(err)
	}
	ci := v.Net.ConnectionInfo()
	fabricFlags := []string{"-fabric.endpoint", ci.Endpoint, "-fabric.server-name", ci.ServerName, "-fabric.tls-ca-cert", ci.TLSCACertPath,
		"-fabric.msp-id", admin.MSPID, "-fabric.cert", admin.CertPath, "-fabric.key-file", admin.KeyPath}
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"OKRegister", append([]string{"vouchers", "register", "-msp", "Distributor2MSP", "-role", "distributor"}, fabricFlags...), 0, `"registered_by": "BankMSP"`},
		{"OKRegisterAgain", append([]string{"vouchers", "register", "-msp", "Distributor2MSP", "-role", "distributor"}, fabricFlags...), 0, `"role": "distributor"`},
		{"OKOrganization", append([]string{"vouchers", "organization", "TaniMSP"}, fabricFlags...), 0, `"role": "operator"`},
		{"ErrRoleChanged", append([]string{"vouchers", "register", "-msp", "Distributor2MSP", "-role", "bank"}, fabricFlags...), 1, "already registered as distributor"},
		{"ErrUnregistered", append([]string{"vouchers", "organization", "NobodyMSP"}, fabricFlags...), 1, "NobodyMSP is not registered"},
		{"ErrUnknownVoucher", append([]string{"vouchers", "get", uuid.NewString()}, fabricFlags...), 1, "does not exist"},
		{"ErrNoSubcommand", []string{"vouchers"}, 2, "usage: tani vouchers register"},
		{"ErrNoFabric", []string{"vouchers", "get", uuid.NewString()}, 2, "usage: tani vouchers register"},
		{"ErrNoRole", append([]string{"vouchers", "register", "-msp", "XMSP"}, fabricFlags...), 2, "usage: tani vouchers register"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out strings.Builder
			code := Main(context.Background(), c.args, &out, &out, noEnv)
			if code != c.code || !strings.Contains(out.String(), c.want) {
				t.Errorf("exit %d, %q; want %d and %q", code, out.String(), c.code, c.want)
			}
		})
	}
}
