package localnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process of the network.
type proc struct {
	name    string
	program string
	args    []string
	env     []string
	// ready returns nil once the process serves.
	ready func(ctx context.Context) error
}

// procDir is where a process keeps its configuration, data, log and pid.
func (n *Network) procDir(name string) string { return filepath.Join(n.run, name) }

func (n *Network) pidFile(name string) string { return filepath.Join(n.procDir(name), "pid") }

// LogFile is the log of the named process (orderer0, peer-TaniMSP,
// ca-TaniMSP, chaincode-TaniMSP).
func (n *Network) LogFile(name string) string { return filepath.Join(n.procDir(name), "log") }

// running reports the pid of the named process when it runs the program
// its pid file names. A pid reused by another program does not count.
func (n *Network) running(name string) (int, bool) {
	b, err := os.ReadFile(n.pidFile(name))
	if err != nil {
		return 0, false
	}
	pidStr, program, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	n.mu.Lock()
	exited := n.exited[pid]
	n.mu.Unlock()
	if exited != nil {
		select {
		case <-exited:
			return 0, false
		default:
		}
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, false
	}
	// A zombie (exited, not yet reaped by a parent that is not us) still
	// answers kill 0; its state says so.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			return 0, false
		}
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != program {
		return 0, false
	}
	return pid, true
}

// start runs p unless it already runs, detached in its own session so it
// outlives the command that started it, its output appended to its log.
func (n *Network) start(p proc) (started bool, err error) {
	if _, ok := n.running(p.name); ok {
		return false, nil
	}
	dir := n.procDir(p.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("localnet: %w", err)
	}
	program, err := filepath.EvalSymlinks(p.program)
	if err != nil {
		return false, fmt.Errorf("localnet: %s: %w", p.name, err)
	}
	if program, err = filepath.Abs(program); err != nil {
		return false, fmt.Errorf("localnet: %w", err)
	}
	logf, err := os.OpenFile(n.LogFile(p.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, fmt.Errorf("localnet: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), program, strings.Join(p.args, " "))
	cmd := exec.Command(program, p.args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("localnet: start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.exited[cmd.Process.Pid] = exited
	n.mu.Unlock()
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := os.WriteFile(n.pidFile(p.name), []byte(fmt.Sprintf("%d\n%s\n", cmd.Process.Pid, program)), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return false, fmt.Errorf("localnet: %w", err)
	}
	return true, nil
}

// waitReady polls p.ready until it succeeds, the process exits (the error
// then carries the end of its log) or ctx ends.
func (n *Network) waitReady(ctx context.Context, p proc) error {
	var last error
	for {
		if last = p.ready(ctx); last == nil {
			return nil
		}
		if _, ok := n.running(p.name); !ok {
			return fmt.Errorf("localnet: %s exited; the end of %s:\n%s", p.name, n.LogFile(p.name), n.logTail(p.name, 25))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localnet: %s not ready (%v): %w; the end of %s:\n%s", p.name, last, ctx.Err(), n.LogFile(p.name), n.logTail(p.name, 25))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Network) logTail(name string, lines int) string {
	b, err := os.ReadFile(n.LogFile(name))
	if err != nil {
		return "(no log)"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// stopOrder stops chaincode servers and peers before orderers, and CAs
// last.
func stopOrder(name string) int {
	switch {
	case strings.HasPrefix(name, "chaincode-"):
		return 0
	case strings.HasPrefix(name, "peer-"):
		return 1
	case strings.HasPrefix(name, "orderer"):
		return 2
	}
	return 3
}

// Down stops every process of the network that has a pid file and still
// runs the program it names: SIGTERM, then SIGKILL after grace. Data
// stays, so Up starts the same network again.
func (n *Network) Down(grace time.Duration) error {
	entries, err := os.ReadDir(n.run)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(n.pidFile(e.Name())); err == nil {
			names = append(names, e.Name())
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return stopOrder(a) - stopOrder(b) })
	var errs []error
	for i := 0; i < len(names); {
		// Stop one group (same order) at once.
		j := i
		for j < len(names) && stopOrder(names[j]) == stopOrder(names[i]) {
			j++
		}
		for _, name := range names[i:j] {
			if pid, ok := n.running(name); ok {
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
				}
			}
		}
		deadline := time.Now().Add(grace)
		for _, name := range names[i:j] {
			for {
				pid, ok := n.running(name)
				if !ok {
					break
				}
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := os.Remove(n.pidFile(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		i = j
	}
	return errors.Join(errs...)
}

// stopOne stops the named process: SIGTERM, SIGKILL after grace.
func (n *Network) stopOne(name string, grace time.Duration) error {
	if pid, ok := n.running(name); ok {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s: %w", name, err)
		}
	}
	deadline := time.Now().Add(grace)
	for {
		pid, ok := n.running(name)
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.Remove(n.pidFile(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Process is one process of the network as Status reports it.
type Process struct {
	Name    string
	PID     int
	Running bool
	// RSS is the resident memory in bytes (0 when not running).
	RSS int64
}

// Status lists the processes that have a pid file, whether they run, and
// their resident memory.
func (n *Network) Status() ([]Process, error) {
	entries, err := os.ReadDir(n.run)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("localnet: %w", err)
	}
	var out []Process
	for _, e := range entries {
		if _, err := os.Stat(n.pidFile(e.Name())); err != nil {
			continue
		}
		p := Process{Name: e.Name()}
		if pid, ok := n.running(e.Name()); ok {
			p.PID, p.Running, p.RSS = pid, true, rss(pid)
		}
		out = append(out, p)
	}
	return out, nil
}

// rss reads a process's resident set size from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
