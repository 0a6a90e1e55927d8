package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/register"
	"github.com/gatewire/gatewire/internal/web"
)

// AllInOneConfig configures the all-in-one process.
type AllInOneConfig struct {
	// Gateway configures the gateway; its register, secret and link
	// addresses are filled in.
	Gateway GatewayConfig
	// Worker configures the worker; its register and secret are filled in.
	// Worker.Store defaults to sqlite:gatewire.db; the demo users are
	// always loaded.
	Worker WorkerConfig
	// Demo serves GET /demo/token, which signs a bind token for any uid, so
	// that the chat page works without an application; a -jwt-secret is
	// made up when none is given.
	Demo bool
}

// demoTokenTTL is how long a demo bind token is valid.
const demoTokenTTL = time.Hour

// RunAllInOne runs a register, a gateway and a worker in one process with an
// in-memory directory and lease table, linked over loopback gRPC with a
// random secret, until ctx ends.
func RunAllInOne(ctx context.Context, cfg AllInOneConfig, log *slog.Logger) error {
	log = discard(log)
	secret := randomSecret()
	dir := directory.NewMemory()
	if cfg.Worker.Store == "" {
		cfg.Worker.Store = "sqlite:gatewire.db"
	}
	st, err := openStore(ctx, cfg.Worker.Store, true, log)
	if err != nil {
		return err
	}
	defer st.Close()
	regLis, err := listen("register", "127.0.0.1:0")
	if err != nil {
		return err
	}
	registers := []string{regLis.Addr().String()}
	gcfg := cfg.Gateway
	gcfg.Registers, gcfg.Secret = registers, secret
	gcfg.LinkAddr, gcfg.LinkAdvertise = "127.0.0.1:0", ""
	wcfg := cfg.Worker
	wcfg.TrustedProxies = gcfg.TrustedProxies // the gateway serves the pages
	webCfg := web.Config{WebSocketURL: cfg.Worker.WebSocketURL}
	if cfg.Demo {
		if wcfg.JWTSecret == "" {
			wcfg.JWTSecret = randomSecret()
		}
		key := []byte(wcfg.JWTSecret)
		webCfg.DemoTokens = func(uid string) (string, error) { return bindtoken.Sign(key, uid, demoTokenTTL) }
		log.Warn("demo mode: GET /demo/token hands out a bind token for any uid; never run it in production")
	}
	deskWeb, err := wcfg.deskWeb(st, log)
	if err != nil {
		return err
	}
	if deskWeb != nil {
		if len(deskWeb.Origins) == 0 { // the sites the gateway accepts
			deskWeb.Origins = gcfg.OriginPatterns
		}
		if cfg.Demo {
			deskWeb.Agents = st.Agents
		}
	}
	webCfg.Desk = deskWeb
	gcfg.Web = web.New(webCfg, st)
	wcfg.Registers, wcfg.Secret = registers, secret

	if gcfg.WSAddr == "" {
		gcfg.WSAddr = "127.0.0.1:8282"
	}
	log.Info("chat page", "url", "http://"+gcfg.WSAddr+"/?from=85&to=86", "websocket", "ws://"+gcfg.WSAddr+"/",
		"agent_console", "http://"+gcfg.WSAddr+"/agent", "widget", "http://"+gcfg.WSAddr+"/static/widget.js")
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return serveRegister(ctx, regLis, RegisterConfig{Secret: secret}, register.NewMemoryTable(), dir, log)
	})
	g.Go(func() error { return serveGateway(ctx, gcfg, dir, log) })
	g.Go(func() error { return serveWorker(ctx, wcfg, dir, st, log) })
	return g.Wait()
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
