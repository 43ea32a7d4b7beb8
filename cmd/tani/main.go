// Command tani runs the Tani data platform. All wiring lives in
// internal/app/cli and internal/app so tests run exactly what this runs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tani-platform/tani/internal/app/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
