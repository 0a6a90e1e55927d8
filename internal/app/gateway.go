package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/gatewire/gatewire/internal/clientip"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/register"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// GatewayConfig configures a gateway process.
type GatewayConfig struct {
	gateway.Config
	// WSAddr is the WebSocket listen address; zero means 127.0.0.1:8282.
	WSAddr string
	// LinkAddr is the gRPC listen address for workers; zero means
	// 127.0.0.1:2000.
	LinkAddr string
	// LinkAdvertise is the address workers dial; zero means the address
	// LinkAddr is bound to (which must then not be a wildcard).
	LinkAdvertise string
	// Registers lists the register replicas; required.
	Registers []string
	// Secret is the cluster's shared secret; required.
	Secret string
	// Metrics says where /metrics, /healthz and (opt-in) pprof are served.
	Metrics MetricsConfig
	// TLS is the inner links' optional mutual TLS.
	TLS TLSConfig
	// Redis holds the directory (RunGateway only).
	Redis RedisConfig
	// TrustedProxies lists the load balancers (IPs or CIDRs) whose
	// X-Forwarded-For is believed.
	TrustedProxies []string
	// HandshakeTimeout bounds reading a client's handshake request; zero
	// means 10s.
	HandshakeTimeout time.Duration
	// Web, if set, serves plain HTTP requests on the WebSocket port (the
	// all-in-one's chat page); WebSocket handshakes still go to the gateway.
	Web http.Handler
}

// RunGateway runs a gateway writing to the Redis directory until ctx ends.
func RunGateway(ctx context.Context, cfg GatewayConfig, log *slog.Logger) error {
	if cfg.Redis.Addr == "" {
		return errors.New("gateway: a Redis address is required (-redis)")
	}
	rdb, err := cfg.Redis.client(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return serveGateway(ctx, cfg, directory.NewRedis(rdb, cfg.Redis.prefix()), log)
}

// GatewayGOGC is a gateway process's GOGC unless the environment sets
// one. A gateway's heap is mostly the long-lived state of its connections
// and it allocates little per frame, so collecting at half the usual
// growth costs little CPU and holds each connection in ~2 KB less memory
// (bench/HISTORY.md); -gc-floor-mib keeps a small heap from collecting
// too often.
const GatewayGOGC = 50

func serveGateway(ctx context.Context, cfg GatewayConfig, dir directory.Directory, log *slog.Logger) error {
	log = discard(log).With("role", "gateway")
	if cfg.Secret == "" {
		return errors.New("gateway: a shared secret is required (-secret)")
	}
	if len(cfg.Registers) == 0 {
		return errors.New("gateway: at least one register address is required (-register)")
	}
	if cfg.WSAddr == "" {
		cfg.WSAddr = "127.0.0.1:8282"
	}
	if cfg.LinkAddr == "" {
		cfg.LinkAddr = "127.0.0.1:2000"
	}
	wsLis, err := listen("gateway websocket", cfg.WSAddr)
	if err != nil {
		return err
	}
	linkLis, err := listen("gateway link", cfg.LinkAddr)
	if err != nil {
		wsLis.Close()
		return err
	}
	advertise := cfg.LinkAdvertise
	if advertise == "" {
		advertise = linkLis.Addr().String()
		if ip := linkLis.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
			wsLis.Close()
			linkLis.Close()
			return errors.New("gateway: -link-advertise is required when -link-addr is a wildcard address")
		}
	}
	if cfg.PublicAddress == "" {
		cfg.PublicAddress = wsLis.Addr().String()
	}
	if cfg.Config.TrustedProxies, err = clientip.ParsePrefixes(cfg.TrustedProxies); err != nil {
		wsLis.Close()
		linkLis.Close()
		return fmt.Errorf("gateway: -trusted-proxies: %w", err)
	}
	gw, err := gateway.New(cfg.Config, dir, log)
	if err != nil {
		wsLis.Close()
		linkLis.Close()
		return err
	}
	dial, err := dialOptions(cfg.Secret, cfg.TLS)
	if err != nil {
		wsLis.Close()
		linkLis.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	gs, err := innerServer(cfg.Secret, cfg.TLS)
	if err != nil {
		wsLis.Close()
		linkLis.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	reg, err := register.NewClient(cfg.Registers, log, dial...)
	if err != nil {
		wsLis.Close()
		linkLis.Close()
		return err
	}
	defer reg.Close()

	linkv1.RegisterLinkServiceServer(gs, gw)
	var handler http.Handler = gw
	if cfg.Web != nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isWebSocket(r) {
				gw.ServeHTTP(w, r)
				return
			}
			cfg.Web.ServeHTTP(w, r)
		})
	}
	log.Info("gateway listening", "gateway_id", gw.ID(), "ws_addr", wsLis.Addr().String(), "link_addr", linkLis.Addr().String(), "link_advertise", advertise)

	// Servers outlive ctx until the clients are closed, so that links still
	// carry the clients' close events.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(ctx)
	if err := startMetrics(serveCtx, g, "gateway", cfg.Metrics, log); err != nil {
		stopServing()
		wsLis.Close()
		linkLis.Close()
		return err
	}
	announceCtx, stopAnnounce := context.WithCancel(context.WithoutCancel(ctx))
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		reg.Announce(announceCtx, &registerv1.Gateway{Id: gw.ID(), LinkAddress: advertise, PublicAddress: cfg.PublicAddress}, 2*time.Second,
			func(ctx context.Context) {
				if err := gw.Republish(ctx); err != nil {
					log.Error("re-publish bindings", "err", err)
				}
			})
	}()

	g.Go(func() error { return serveHTTP(serveCtx, handler, wsLis, cfg.HandshakeTimeout) })
	g.Go(func() error { return serveGRPC(serveCtx, gs, linkLis) })
	g.Go(func() error {
		<-gctx.Done()
		// Leave the register first so workers stop sending here, then close
		// the clients so that they reconnect elsewhere.
		stopAnnounce()
		<-announced
		gw.Close(websocket.StatusServiceRestart, "gateway shutting down")
		stopServing()
		return nil
	})
	return g.Wait()
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
