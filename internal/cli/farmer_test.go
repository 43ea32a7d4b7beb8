package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestFarmerCommand_RefusesBadInvocations(t *testing.T) {
	farmer := "6f1c1b0e-8d4a-4c9e-9a55-3f3a2b1c0d9e"
	noEnv := func(string) string { return "" }
	missingToken := filepath.Join(t.TempDir(), "operator-token")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ErrNoSubcommand", []string{"farmer"}, 2, "usage: tani farmer erase"},
		{"ErrUnknownSubcommand", []string{"farmer", "delete", farmer}, 2, "usage: tani farmer erase"},
		{"ErrNoFarmer", []string{"farmer", "erase", "-reason", "ticket 1", "-requested-by", "Dewi"}, 2, "must be the farmer's UUID"},
		{"ErrFarmerNotUUID", []string{"farmer", "erase", "siti", "-reason", "ticket 1", "-requested-by", "Dewi"}, 2, "must be the farmer's UUID"},
		{"ErrNoReason", []string{"farmer", "erase", farmer, "-requested-by", "Dewi"}, 2, "-reason and -requested-by are required"},
		{"ErrNoRequester", []string{"farmer", "erase", "-reason", "ticket 1", farmer}, 2, "-reason and -requested-by are required"},
		{"ErrNoToken", []string{"farmer", "erasure", farmer, "-operator-token-file", missingToken}, 1, "no operator token"},
		{"ErrUnreachable", []string{"farmer", "erasure", farmer, "-operator-token", "t", "-url", "http://127.0.0.1:1"}, 1, "tani farmer: "},
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
