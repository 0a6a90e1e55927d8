// Command register runs a gatewire register: it knows which gateways are alive (leases with heartbeats, kept in Redis so several replicas can run) and purges the directory entries of gateways whose lease lapses.
//
// Every flag has an environment variable: -some-flag is GATEWIRE_SOME_FLAG.
// Run with -h for the list.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/gatewire/gatewire/internal/app"
)

func main() {
	var cfg app.RegisterConfig
	app.Main("gatewire-register", app.DefaultGOGC,
		func(fs *flag.FlagSet) { app.RegisterFlags(fs, &cfg) },
		func(ctx context.Context, log *slog.Logger) error { return app.RunRegister(ctx, cfg, log) })
}
