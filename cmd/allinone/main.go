// Command allinone runs a gatewire register, gateway and worker in one process with an in-memory directory: one command starts a working chat on a fresh machine.
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
	var cfg app.AllInOneConfig
	app.Main("gatewire-allinone", app.DefaultGOGC,
		func(fs *flag.FlagSet) { app.AllInOneFlags(fs, &cfg) },
		func(ctx context.Context, log *slog.Logger) error { return app.RunAllInOne(ctx, cfg, log) })
}
