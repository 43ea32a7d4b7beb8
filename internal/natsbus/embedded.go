package natsbus

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the in-process JetStream server.
type EmbeddedConfig struct {
	DataDir string // JetStream files live in DataDir/nats
	Listen  string // host:port for external clients; "" serves this process only
	// StoreKey encrypts the JetStream store at rest (AES-256-GCM):
	// streams carry signed records with national IDs and phones. Empty
	// leaves the store in clear (tests).
	StoreKey string
}

// StartEmbedded starts a JetStream server inside the process and waits until
// it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, logger *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName:             "tani-embedded",
		JetStream:              true,
		StoreDir:               filepath.Join(cfg.DataDir, "nats"),
		DontListen:             cfg.Listen == "",
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
	}
	if cfg.StoreKey != "" {
		opts.JetStreamKey = cfg.StoreKey
		// AES-256-GCM runs on the CPU's AES instructions; nats-server's
		// ChaCha20-Poly1305 is plain Go and cost 4-7 % of the capture
		// path's CPU. A store written with ChaCha20 is converted block by
		// block when the server opens it.
		opts.JetStreamCipher = server.AES
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats listen address %q: %w", cfg.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded nats port %q: %w", port, err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT // nats-server reads 0 as its default 4222
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure embedded nats: %w", err)
	}
	s.SetLoggerV2(serverLogger{logger}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats did not become ready within 30s (store %s)", opts.StoreDir)
	}
	return s, nil
}

// serverLogger routes nats-server's log lines to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  {}
