package natsbus

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says which NATS to use: the embedded server when URL is empty,
// otherwise an external cluster.
type Config struct {
	URL            string
	EmbeddedListen string
	Replicas       int
}

// RegisterFlags registers the nats.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "nats.url", "", "NATS URL of an external JetStream cluster, comma-separated for several nodes (nats://a:4222,nats://b:4222); empty runs an embedded server")
	fs.StringVar(&c.EmbeddedListen, "nats.embedded-listen", "", "host:port where the embedded server also accepts external clients; empty keeps it in-process")
	fs.IntVar(&c.Replicas, "nats.replicas", 1, "replicas of every stream and consumer: 1 for the embedded server, 3 on a cluster (survives losing one node)")
}

// MaxReplicas is the most replicas JetStream allows a stream.
const MaxReplicas = 5

// Validate refuses replica counts the broker cannot honour, before any
// stream is created with them: the embedded server is a single node.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > MaxReplicas:
		return fmt.Errorf("-nats.replicas %d must be between 1 and %d", c.Replicas, MaxReplicas)
	case c.Replicas > 1 && c.URL == "":
		return fmt.Errorf("-nats.replicas %d needs a JetStream cluster of at least %d nodes (-nats.url); the embedded server is one node", c.Replicas, c.Replicas)
	}
	return nil
}

// Redacted returns the URL, or each of several comma-separated URLs, with
// credentials masked.
func (c Config) Redacted() string {
	if c.URL == "" {
		return "(embedded)"
	}
	parts := strings.Split(c.URL, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			return "(unparseable NATS URL)"
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// Connect connects to the external URL or, when embedded is non-nil, to that
// in-process server. Reconnection is unlimited: a broker restart must not
// take the process down.
func Connect(cfg Config, embedded *server.Server, name string, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// Asynchronous errors (a slow consumer dropping messages, a
		// permission refused) go to the log, not to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("nats asynchronous error", "subject", subject, "err", err)
		}),
	}
	target := cfg.Redacted()
	if embedded != nil {
		opts = append(opts, nats.InProcessServer(embedded))
	} else if cfg.URL == "" {
		return nil, nil, fmt.Errorf("no NATS: set TANI_NATS_URL or run the embedded server")
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w\n  is the server running? set TANI_NATS_URL, or leave it empty for the embedded server", target, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream on %s: %w", target, err)
	}
	return nc, js, nil
}
