package media

import (
	"context"
	"log/slog"

	expslog "golang.org/x/exp/slog"
)

// tusLogger gives tusd, which logs through golang.org/x/exp/slog, the
// module's logger. tusd logs every request at info level (the access log
// already does) and routine client disconnects as errors (on 2G they are
// the norm), so only its warnings and errors pass, all as warnings: the
// failures that matter are logged by this package itself.
func tusLogger(l *slog.Logger) *expslog.Logger {
	return expslog.New(tusHandler{l: l.With("component", "tusd")})
}

type tusHandler struct{ l *slog.Logger }

func (h tusHandler) Enabled(ctx context.Context, level expslog.Level) bool {
	return level >= expslog.LevelWarn && h.l.Enabled(ctx, slog.LevelWarn)
}

func (h tusHandler) Handle(ctx context.Context, r expslog.Record) error {
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a expslog.Attr) bool {
		attrs = append(attrs, slog.Any(a.Key, a.Value.Any()))
		return true
	})
	h.l.LogAttrs(ctx, slog.LevelWarn, r.Message, attrs...)
	return nil
}

func (h tusHandler) WithAttrs(as []expslog.Attr) expslog.Handler {
	args := make([]any, 0, len(as))
	for _, a := range as {
		args = append(args, slog.Any(a.Key, a.Value.Any()))
	}
	return tusHandler{l: h.l.With(args...)}
}

func (h tusHandler) WithGroup(name string) expslog.Handler {
	return tusHandler{l: h.l.WithGroup(name)}
}
