package porttest_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tani-platform/tani/internal/porttest"
)

func TestPort(t *testing.T) {
	ephemeral := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if lo, err := strconv.Atoi(strings.Fields(string(data))[0]); err == nil {
			ephemeral = lo
		}
	}
	seen := map[int]bool{}
	for range 200 {
		p := porttest.Port(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < 10000 || p >= ephemeral {
			t.Fatalf("port %d outside [10000, %d): the kernel may give it to an outgoing connection", p, ephemeral)
		}
	}
	addr := porttest.Addr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	l.Close()
}
