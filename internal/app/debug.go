package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// DebugConfig turns on the profiling endpoint.
type DebugConfig struct {
	// PprofAddr is where net/http/pprof is served, on a loopback address
	// only; empty (the default) serves nothing.
	PprofAddr string
}

// RegisterFlags registers the debug.* flags.
func (c *DebugConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PprofAddr, "debug.pprof", "",
		"serve Go profiles (net/http/pprof, under /debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060; "+
			"off when empty; any other address is refused: profiles show the process's memory and must not leave the host (reach them with an SSH tunnel or kubectl port-forward)")
}

// validate refuses an address that is not loopback: an IP literal of the
// loopback range or localhost, with a port. It does no I/O.
func (c DebugConfig) validate() error {
	if c.PprofAddr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.PprofAddr)
	if err != nil || port == "" {
		return fmt.Errorf("-debug.pprof=%q: want a loopback host:port such as 127.0.0.1:6060", c.PprofAddr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-debug.pprof=%q: refused: profiles are served on a loopback address only (127.0.0.1, ::1 or localhost), "+
			"since they expose the process's memory and can stall it; reach them through an SSH tunnel or kubectl port-forward", c.PprofAddr)
	}
	return nil
}

// pprofServer serves net/http/pprof on its own listener, apart from the
// API: it has no authentication, so it must never share the API's address.
type pprofServer struct {
	srv *http.Server
	ln  net.Listener
}

// startPprof listens on cfg.PprofAddr (already validated) and serves the
// profiles until stop. It checks the address it got is loopback, since
// localhost is resolved only now.
func startPprof(cfg DebugConfig, logger *slog.Logger) (*pprofServer, error) {
	ln, err := net.Listen("tcp", cfg.PprofAddr)
	if err != nil {
		return nil, fmt.Errorf("debug.pprof: listen on %s: %w", cfg.PprofAddr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("debug.pprof: %s resolved to %s, which is not a loopback address", cfg.PprofAddr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &pprofServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("debug.pprof: serve", "err", err)
		}
	}()
	logger.Info("serving Go profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return s, nil
}

// Addr is the address the profiles are served on.
func (s *pprofServer) Addr() string { return s.ln.Addr().String() }

// stop closes the listener, lets requests in progress end for a moment
// (a CPU profile runs for its whole duration), then cuts them.
func (s *pprofServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
}
