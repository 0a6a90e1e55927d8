package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/register"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// RegisterConfig configures a register process.
type RegisterConfig struct {
	// Addr is the gRPC listen address; zero means 127.0.0.1:1236.
	Addr string
	// Secret is the cluster's shared secret; required.
	Secret string
	// Metrics says where /metrics, /healthz and (opt-in) pprof are served.
	Metrics MetricsConfig
	// Redis holds the lease table and the directory.
	Redis RedisConfig
	// Lease is a gateway's lease; zero means 5s.
	Lease time.Duration
	// TLS is the inner links' optional mutual TLS.
	TLS TLSConfig
}

// RunRegister runs a register backed by Redis until ctx ends.
func RunRegister(ctx context.Context, cfg RegisterConfig, log *slog.Logger) error {
	if cfg.Secret == "" {
		return errors.New("register: a shared secret is required (-secret)")
	}
	if cfg.Redis.Addr == "" {
		return errors.New("register: a Redis address is required (-redis)")
	}
	rdb, err := cfg.Redis.client(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:1236"
	}
	lis, err := listen("register", cfg.Addr)
	if err != nil {
		return err
	}
	table := register.NewRedisTable(rdb, cfg.Redis.prefix())
	dir := directory.NewRedis(rdb, cfg.Redis.prefix())
	return serveRegister(ctx, lis, cfg, table, dir, log)
}

// serveRegister runs a register on lis with the given backends.
func serveRegister(ctx context.Context, lis net.Listener, cfg RegisterConfig, table register.Table, dir directory.Directory, log *slog.Logger) error {
	log = discard(log).With("role", "register")
	srv, err := register.NewServer(register.ServerConfig{Lease: cfg.Lease}, table, dir, log)
	if err != nil {
		lis.Close()
		return err
	}
	gs, err := innerServer(cfg.Secret, cfg.TLS)
	if err != nil {
		lis.Close()
		return fmt.Errorf("register: %w", err)
	}
	registerv1.RegisterRegisterServiceServer(gs, srv)
	log.Info("register listening", "addr", lis.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	if err := startMetrics(ctx, g, "register", cfg.Metrics, log); err != nil {
		lis.Close()
		return err
	}
	g.Go(func() error { return srv.Run(ctx) })
	g.Go(func() error { return serveGRPC(ctx, gs, lis) })
	return g.Wait()
}
