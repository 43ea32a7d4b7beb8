package app

import (
	"context"
	"flag"
	"time"

	"github.com/tani-platform/tani/internal/demo"
)

// DemoConfig turns on the demo feeder.
type DemoConfig struct {
	Enabled  bool
	Interval time.Duration
}

// RegisterFlags registers the demo flags.
func (c *DemoConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "demo", false, "feed demo records through the mobile API (what `make run` does)")
	fs.DurationVar(&c.Interval, "demo.interval", 3*time.Second, "time between demo batches")
}

func (a *App) initDemo() (Service, error) {
	token, err := a.operatorToken()
	if err != nil {
		return nil, err
	}
	f := demo.New("http://"+a.server.Addr(), token, a.cfg.Demo.Interval, a.logger.With("module", Demo))
	return funcService{run: func(ctx context.Context) error {
		select { // the API answers 503 until every module runs
		case <-a.ready:
		case <-ctx.Done():
			return nil
		}
		return f.Run(ctx)
	}}, nil
}
