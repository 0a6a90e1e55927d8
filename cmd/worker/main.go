// Command worker runs a gatewire worker with the chat handler: it links to every live gateway, handles client events and serves the Push API for backend services.
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
	var cfg app.WorkerConfig
	app.Main("gatewire-worker", app.DefaultGOGC,
		func(fs *flag.FlagSet) { app.WorkerFlags(fs, &cfg) },
		func(ctx context.Context, log *slog.Logger) error { return app.RunWorker(ctx, cfg, log) })
}
