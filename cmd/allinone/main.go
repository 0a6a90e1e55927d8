// Command allinone runs a gatewire register, gateway and worker in one process with an in-memory directory: one command starts a working chat on a fresh machine.
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
		fmt.Fprintln(os.Stderr, "gatewire-allinone:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gatewire-allinone", flag.ContinueOnError)
	var cfg app.AllInOneConfig
	app.AllInOneFlags(fs, &cfg)
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
	return app.RunAllInOne(ctx, cfg, log)
}
