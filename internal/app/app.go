// Package app assembles gatewire's processes from the internal packages:
// Register, Gateway and Worker each run one role until their context ends,
// and the all-in-one runs all three in one process by calling them with
// in-memory backends. The cmd/ programs only parse flags and call these.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/gatewire/gatewire/internal/bearer"
	"github.com/gatewire/gatewire/internal/metrics"
)

// stopTimeout bounds a graceful gRPC or HTTP server stop.
const stopTimeout = 5 * time.Second

// Flow-control windows of every gRPC connection between gatewire's
// processes (and of the Push API). Setting them turns off gRPC's dynamic
// windows, whose bandwidth estimator answers a data frame that follows a
// quiet moment with a window update and a ping, which the peer must read
// and acknowledge: on a link carrying one small event or command at a time
// that was two more frames, each a write and a read, per message. Static
// windows this large never throttle a link on a LAN, and cost no memory
// until data is in flight.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// newGRPCServer returns a gRPC server that requires token on every call but
// the health and reflection services, and serves both of those.
func newGRPCServer(token string, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts := append(bearer.ServerOptions(token, "/grpc.health.v1.Health/", "/grpc.reflection."), extra...)
	opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.StaticStreamWindowSize(streamWindow), grpc.StaticConnWindowSize(connWindow))
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return s, h
}

// dialOptions returns the options processes use to call each other.
func dialOptions(secret string, t TLSConfig) ([]grpc.DialOption, error) {
	creds, err := t.transport()
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer.Credentials(secret)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithStaticStreamWindowSize(streamWindow), grpc.WithStaticConnWindowSize(connWindow),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: minConnectTimeout}),
	}, nil
}

// reconnectBackoff paces reconnection to a peer that went away. gRPC's
// default grows to 120 s, so a register down for a minute would come back
// to gateways that try again only a minute or two later, long after the
// start grace of one lease it gives them to renew: their leases would lapse
// and their entries be purged. Capped at half a second (with the
// register client's own half-second retry, a gateway renews within about a
// second of the register's return, well inside even a short lease); the
// peers are a handful of processes on one network, for whom two attempts
// a second are nothing.
var reconnectBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}

// minConnectTimeout bounds one connection attempt (gRPC's default is
// 20 s): a peer on the same network answers in milliseconds, and one that
// does not should not hold up the next attempt.
const minConnectTimeout = 3 * time.Second

// innerServer returns the gRPC server of an inner link: it requires the
// shared secret and, with t, a client certificate.
func innerServer(secret string, t TLSConfig) (*grpc.Server, error) {
	opts, err := t.serverOptions()
	if err != nil {
		return nil, err
	}
	gs, _ := newGRPCServer(secret, opts...)
	return gs, nil
}

// serveGRPC serves s on lis until ctx ends, then stops it gracefully (and
// forcibly after stopTimeout).
func serveGRPC(ctx context.Context, s *grpc.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("grpc server on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.Stop()
		<-done
	}
	<-errc
	return nil
}

// serveHTTP serves h on lis until ctx ends, then shuts it down. A client
// has headerTimeout (zero: 10s) to send its request headers.
func serveHTTP(ctx context.Context, h http.Handler, lis net.Listener, headerTimeout time.Duration) error {
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		_ = s.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// MetricsConfig says where a process serves its metrics.
type MetricsConfig struct {
	// Addr serves /metrics and /healthz; empty disables them.
	Addr string
	// Pprof also serves net/http/pprof's /debug/pprof/ on Addr.
	Pprof bool
}

// startMetrics serves /metrics and /healthz (and /debug/pprof/ with
// m.Pprof) on m.Addr in g until ctx ends; an empty Addr serves nothing.
func startMetrics(ctx context.Context, g *errgroup.Group, role string, m MetricsConfig, log *slog.Logger) error {
	if m.Addr == "" {
		return nil
	}
	lis, err := listen(role+" metrics", m.Addr)
	if err != nil {
		return err
	}
	var h http.Handler = metrics.Handler()
	if m.Pprof {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		h = mux
		log.Warn("pprof listening: profiles expose internals; keep this address private", "addr", "http://"+lis.Addr().String()+"/debug/pprof/")
	}
	log.Info("metrics listening", "addr", "http://"+lis.Addr().String()+"/metrics")
	g.Go(func() error { return serveHTTP(ctx, h, lis, 0) })
	return nil
}

// RedisConfig says how to reach Redis.
type RedisConfig struct {
	// Addr is "host:port", a comma-separated list of cluster nodes, or a
	// redis:// URL.
	Addr string
	// Prefix starts every key; zero means "gatewire:".
	Prefix string
}

// client returns a Redis client for c and checks that Redis answers.
func (c RedisConfig) client(ctx context.Context) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	if strings.HasPrefix(c.Addr, "redis://") || strings.HasPrefix(c.Addr, "rediss://") {
		opt, err := redis.ParseURL(c.Addr)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		rdb = redis.NewClient(opt)
	} else {
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(c.Addr, ",")})
	}
	rdb.AddHook(redisMetrics{})
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", redactURL(c.Addr), err)
	}
	return rdb, nil
}

func (c RedisConfig) prefix() string {
	if c.Prefix == "" {
		return "gatewire:"
	}
	return c.Prefix
}

// redactURL hides a password in a redis:// URL.
func redactURL(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			return s[:scheme+3] + "***" + s[at:]
		}
	}
	return s
}

// listen opens a TCP listener, naming the role in the error.
func listen(role, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", role, addr, err)
	}
	return lis, nil
}

func discard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
