package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatewire/gatewire/internal/flagenv"
)

// secretFlags are never logged.
var secretFlags = map[string]bool{"secret": true, "push-token": true, "jwt-secret": true}

// Main is a gatewire program: it registers the program's flags with
// register, parses the command line and the GATEWIRE_ environment, logs
// the effective configuration without secrets, applies the GC settings
// (GOGC is gogc unless the environment sets it; GCFlags) and calls run
// until SIGINT or SIGTERM. It exits with status 1 and the error on stderr
// if run fails.
func Main(name string, gogc int, register func(*flag.FlagSet), run func(context.Context, *slog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mainErr(ctx, name, gogc, os.Args[1:], register, run); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		stop()
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, name string, gogc int, args []string, register func(*flag.FlagSet), run func(context.Context, *slog.Logger) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	register(fs)
	logger := LogFlags(fs)
	startGC := GCFlags(fs)
	if err := flagenv.Parse(fs, EnvPrefix, args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	stopGC, err := startGC(gogc)
	if err != nil {
		return err
	}
	defer stopGC()
	log.Info("starting", append([]any{"program", name}, effectiveConfig(fs)...)...)
	return run(ctx, log)
}

// effectiveConfig returns every flag's value as log attributes, secrets
// masked and Redis passwords hidden.
func effectiveConfig(fs *flag.FlagSet) []any {
	var attrs []any
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch {
		case secretFlags[f.Name] && v != "":
			v = "***"
		case f.Name == "redis":
			v = redactURL(v)
		}
		attrs = append(attrs, slog.String(f.Name, v))
	})
	return attrs
}
