package app

import (
	"context"
	"errors"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/gatewire/gatewire/internal/chat"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/push"
	"github.com/gatewire/gatewire/internal/register"
	"github.com/gatewire/gatewire/internal/worker"
	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// WorkerConfig configures a worker process running the chat.
type WorkerConfig struct {
	worker.Config
	// Registers lists the register replicas; required.
	Registers []string
	// Secret is the cluster's shared secret; required.
	Secret string
	// Redis holds the directory (RunWorker only).
	Redis RedisConfig
	// PushAddr is the Push API's listen address; empty disables it.
	PushAddr string
	// PushToken is the Push API's bearer token; required when PushAddr is set.
	PushToken string
	// InsecureBind accepts the seed's token-less bind.
	InsecureBind bool
}

// RunWorker runs a chat worker reading the Redis directory until ctx ends.
func RunWorker(ctx context.Context, cfg WorkerConfig, log *slog.Logger) error {
	if cfg.Redis.Addr == "" {
		return errors.New("worker: a Redis address is required (-redis)")
	}
	rdb, err := cfg.Redis.client(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return serveWorker(ctx, cfg, directory.NewRedis(rdb, cfg.Redis.prefix()), log)
}

func serveWorker(ctx context.Context, cfg WorkerConfig, dir directory.Directory, log *slog.Logger) error {
	log = discard(log).With("role", "worker")
	if cfg.Secret == "" {
		return errors.New("worker: a shared secret is required (-secret)")
	}
	if len(cfg.Registers) == 0 {
		return errors.New("worker: at least one register address is required (-register)")
	}
	if cfg.PushAddr != "" && cfg.PushToken == "" {
		return errors.New("worker: the Push API needs a bearer token (-push-token), or disable it with -push-addr ''")
	}
	cfg.DialOptions = append(cfg.DialOptions, dialOptions(cfg.Secret)...)
	w := worker.New(cfg.Config, dir, log)
	h := chat.New(chat.Config{InsecureBind: cfg.InsecureBind}, w.API(), log)
	reg, err := register.NewClient(cfg.Registers, log, dialOptions(cfg.Secret)...)
	if err != nil {
		return err
	}
	defer reg.Close()

	g, gctx := errgroup.WithContext(ctx)
	if cfg.PushAddr != "" {
		lis, err := listen("worker push api", cfg.PushAddr)
		if err != nil {
			return err
		}
		gs, _ := newGRPCServer(cfg.PushToken)
		pushv1.RegisterPushServiceServer(gs, push.NewServer(w.API()))
		log.Info("push api listening", "addr", lis.Addr().String())
		g.Go(func() error { return serveGRPC(gctx, gs, lis) })
	}
	g.Go(func() error { reg.Watch(gctx, w.SetGateways); return nil })
	g.Go(func() error { return w.Run(gctx, h) })
	return g.Wait()
}
