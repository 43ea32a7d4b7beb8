package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CPU accounting. On a machine shared with other work, wall time says how
// much of the machine a run got; CPU time per record says what the work
// costs, whatever else ran. Both are read from Linux's /proc (and
// getrusage for this process); where they cannot be read the figures are
// left out.

// userHZ is the unit of /proc/<pid>/stat times: USER_HZ, 100 on Linux.
const userHZ = 100

// processCPU is the user and system CPU time process pid has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields are counted
	// after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// selfCPU is this process's user and system CPU time.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// backendsCPU is the CPU time used so far by the Postgres backends
// connected to db's database, which must run on this machine. A backend
// that exits takes its time with it: pools keep theirs open.
func backendsCPU(ctx context.Context, db *pgxpool.Pool) (time.Duration, error) {
	rows, err := db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return 0, err
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return 0, err
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		t, err := processCPU(pid)
		if err != nil {
			return 0, fmt.Errorf("backend %d: %w", pid, err)
		}
		total += t
	}
	return total, nil
}

// cpuMeter reads several CPU clocks at the start and end of a phase.
type cpuMeter struct {
	names  []string
	read   []func() (time.Duration, error)
	start  []time.Duration
	failed []bool
}

func (m *cpuMeter) add(name string, read func() (time.Duration, error)) {
	m.names, m.read = append(m.names, name), append(m.read, read)
}

func (m *cpuMeter) begin() {
	m.start, m.failed = make([]time.Duration, len(m.read)), make([]bool, len(m.read))
	for i, r := range m.read {
		t, err := r()
		m.start[i], m.failed[i] = t, err != nil
	}
}

// end returns, per clock still readable, the CPU microseconds per unit
// of work done since begin.
func (m *cpuMeter) end(units int) []Side {
	var out []Side
	for i, r := range m.read {
		t, err := r()
		if err != nil || m.failed[i] || units == 0 {
			continue
		}
		out = append(out, Side{Name: m.names[i], Unit: "µs/record", Value: float64((t-m.start[i])/time.Microsecond) / float64(units)})
	}
	return out
}
