package app

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// LogConfig chooses the log format and level.
type LogConfig struct {
	Format string
	Level  string
}

// RegisterFlags registers the log.* flags.
func (c *LogConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log.format", "json", "log format: json or text")
	fs.StringVar(&c.Level, "log.level", "info", "log level: debug, info, warn or error")
}

// NewLogger builds the process logger writing to w.
func (c LogConfig) NewLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want json or text", c.Format)
}
