// Command worker runs a gatewire worker with the chat handler: it links to every live gateway, handles client events and serves the Push API for backend services.
//
// Every flag has an environment variable: -some-flag is GATEWIRE_SOME_FLAG.
// Run with -h for the list.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatewire/gatewire/internal/app"
	"github.com/gatewire/gatewire/internal/flagenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gatewire-worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gatewire-worker", flag.ContinueOnError)
	var cfg app.WorkerConfig
	app.WorkerFlags(fs, &cfg)
	logger := app.LogFlags(fs)
	if err := flagenv.Parse(fs, app.EnvPrefix, args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	return app.RunWorker(ctx, cfg, log)
}
