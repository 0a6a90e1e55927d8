// Command gateway runs a gatewire gateway: it holds client WebSocket connections, forwards their events to workers over gRPC links and executes the workers' commands. It has no business logic.
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
	var cfg app.GatewayConfig
	app.Main("gatewire-gateway", app.GatewayGOGC,
		func(fs *flag.FlagSet) { app.GatewayFlags(fs, &cfg) },
		func(ctx context.Context, log *slog.Logger) error { return app.RunGateway(ctx, cfg, log) })
}
