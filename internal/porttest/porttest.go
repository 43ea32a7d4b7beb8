// Package porttest picks loopback ports for the processes a test starts,
// before they listen on them.
//
// The usual way, listening on port 0 and closing, hands out a port from
// the kernel's ephemeral range, and once it is closed the kernel may give
// it to the next outgoing connection as its source port. CI saw a NATS
// node fail to listen on its route port that way: another node's
// connection had taken it in between, and the cluster never formed. The
// ports picked here lie below that range, which outgoing connections never
// take, and are never handed out twice in one test process.
package porttest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// floor is the lowest port picked: above the well-known ports and those
// most registered services use.
const floor = 10000

var (
	mu    sync.Mutex
	taken = map[int]bool{}
)

// Port returns a loopback port nothing listens on, below the kernel's
// ephemeral range and not returned before in this process.
func Port(tb testing.TB) int {
	tb.Helper()
	ceiling := ephemeralFloor()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := floor + rand.IntN(ceiling-floor)
		if taken[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		l.Close()
		taken[port] = true
		return port
	}
	tb.Fatalf("porttest: no free loopback port between %d and %d", floor, ceiling)
	return 0
}

// Addr is Port as "127.0.0.1:port".
func Addr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(tb))
}

// ephemeralFloor is the first port of the kernel's ephemeral range (Linux
// ip_local_port_range), or 32768, Linux's default, where it cannot be read
// or leaves too little room below it.
func ephemeralFloor() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 32768
	}
	lo, err := strconv.Atoi(fields[0])
	if err != nil || lo < floor+1000 {
		return 32768
	}
	return lo
}
