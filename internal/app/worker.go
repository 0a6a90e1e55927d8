package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/gatewire/gatewire/internal/bindtoken"
	"github.com/gatewire/gatewire/internal/chat"
	"github.com/gatewire/gatewire/internal/clientip"
	"github.com/gatewire/gatewire/internal/desk"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/push"
	"github.com/gatewire/gatewire/internal/register"
	"github.com/gatewire/gatewire/internal/store"
	"github.com/gatewire/gatewire/internal/web"
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
	// Metrics says where /metrics, /healthz and (opt-in) pprof are served.
	Metrics MetricsConfig
	// TLS is the inner links' optional mutual TLS.
	TLS TLSConfig
	// Redis holds the directory (RunWorker only).
	Redis RedisConfig
	// DirectoryCache is how long the worker may answer a uid's connections
	// from memory; zero or negative reads Redis for every lookup (RunWorker
	// only). See directory.Cache.
	DirectoryCache time.Duration
	// PushAddr is the Push API's listen address; empty disables it.
	PushAddr string
	// PushHTTPAddr serves the Push API as HTTP/JSON; empty disables it.
	PushHTTPAddr string
	// PushTLSCert and PushTLSKey, when set, serve the Push API (gRPC and
	// HTTP) over TLS with this certificate.
	PushTLSCert, PushTLSKey string
	// PushToken is the Push API's bearer token; required when PushAddr is set.
	PushToken string
	// JWTSecret verifies bind tokens (HS256, "sub" = uid); required
	// unless InsecureBind.
	JWTSecret string
	// InsecureBind accepts the seed's token-less bind.
	InsecureBind bool
	// Store is the message store: a postgres:// URL or sqlite:<path>
	// (RunWorker only; required).
	Store string
	// DemoUsers loads the seed's five demo users into the store at start.
	DemoUsers bool
	// HTTPAddr serves the chat page; empty disables it (RunWorker only).
	HTTPAddr string
	// WebSocketURL is where the chat page connects; empty means the page's
	// own host.
	WebSocketURL string
	// AgentCap caps the open conversations the desk assigns one agent
	// (zero or negative: no cap).
	AgentCap int
	// SaveLinger is chat.Config.SaveLinger: how long, under steady
	// traffic, a say's write waits for others to share its commit.
	SaveLinger time.Duration
	// PresenceGrace is how long an agent may be without any connection
	// before the desk sets them offline.
	PresenceGrace time.Duration
	// DeskOrigins are the sites (host patterns) allowed to embed the
	// desk's widget; they must be allowed by the gateways' -origins too.
	DeskOrigins []string
	// ImageDir keeps uploaded images in a directory; empty keeps them in
	// the store.
	ImageDir string
	// MaxImageBytes bounds an image upload.
	MaxImageBytes int64
	// VisitorTokenRate and ImageRate limit, per client IP and minute, the
	// visitor tokens the desk hands out and the images it takes (zero or
	// negative: no limit).
	VisitorTokenRate, ImageRate float64
	// TrustedProxies lists the load balancers (IPs or CIDRs) whose
	// X-Forwarded-For names the client of the chat page's HTTP endpoints.
	// The all-in-one uses its gateway's.
	TrustedProxies []string
}

// images returns where uploaded images live: ImageDir, or the store.
func (cfg WorkerConfig) images(st store.Store) (store.ImageStore, error) {
	if cfg.ImageDir == "" {
		return st, nil
	}
	d, err := store.NewDirImages(cfg.ImageDir)
	if err != nil {
		return nil, fmt.Errorf("worker: -image-dir: %w", err)
	}
	return d, nil
}

// deskWeb returns the desk's HTTP side, or nil (with a warning) when there
// is no -jwt-secret to sign visitor tokens with.
func (cfg WorkerConfig) deskWeb(st store.Store, log *slog.Logger) (*web.DeskConfig, error) {
	if cfg.JWTSecret == "" {
		discard(log).Warn("desk: no -jwt-secret, so no visitor tokens: the widget and image uploads are disabled")
		return nil, nil
	}
	tokens, err := bindtoken.NewVerifier([]byte(cfg.JWTSecret))
	if err != nil {
		return nil, fmt.Errorf("worker: -jwt-secret: %w", err)
	}
	images, err := cfg.images(st)
	if err != nil {
		return nil, err
	}
	trusted, err := clientip.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("worker: -trusted-proxies: %w", err)
	}
	key := []byte(cfg.JWTSecret)
	return &web.DeskConfig{
		SignToken:     func(uid string, ttl time.Duration) (string, error) { return bindtoken.Sign(key, uid, ttl) },
		VerifyToken:   tokens.Verify,
		Origins:       cfg.DeskOrigins,
		Images:        images,
		MaxImageBytes: cfg.MaxImageBytes,
		// A minute's worth at once: a page may load several times quickly.
		VisitorTokens:  clientip.NewLimiter(cfg.VisitorTokenRate, int(cfg.VisitorTokenRate)),
		Uploads:        clientip.NewLimiter(cfg.ImageRate, int(cfg.ImageRate)),
		TrustedProxies: trusted,
		Log:            log,
	}, nil
}

// RunWorker runs a chat worker reading the Redis directory and keeping
// messages in cfg.Store until ctx ends.
func RunWorker(ctx context.Context, cfg WorkerConfig, log *slog.Logger) error {
	if cfg.Redis.Addr == "" {
		return errors.New("worker: a Redis address is required (-redis)")
	}
	if cfg.Store == "" {
		return errors.New("worker: a message store is required (-store postgres://... or sqlite:<path>)")
	}
	rdb, err := cfg.Redis.client(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := openStore(ctx, cfg.Store, cfg.DemoUsers, log)
	if err != nil {
		return err
	}
	defer st.Close()
	g, gctx := errgroup.WithContext(ctx)
	if cfg.HTTPAddr != "" {
		lis, err := listen("worker http", cfg.HTTPAddr)
		if err != nil {
			return err
		}
		deskWeb, err := cfg.deskWeb(st, log)
		if err != nil {
			lis.Close()
			return err
		}
		log.Info("chat page listening", "addr", "http://"+lis.Addr().String()+"/", "agent_console", "http://"+lis.Addr().String()+"/agent")
		g.Go(func() error {
			return serveHTTP(gctx, web.New(web.Config{WebSocketURL: cfg.WebSocketURL, Desk: deskWeb}, st), lis, 0)
		})
	}
	redisDir := directory.NewRedis(rdb, cfg.Redis.prefix())
	dir := directory.Coalesce(redisDir)
	if cfg.DirectoryCache > 0 {
		cache := directory.NewCache(dir, cfg.DirectoryCache)
		g.Go(func() error {
			redisDir.Watch(gctx, cache, discard(log))
			return nil
		})
		dir = cache
	}
	g.Go(func() error {
		return serveWorker(gctx, cfg, dir, st, log)
	})
	return g.Wait()
}

// openStore opens the message store at url and loads the demo users if
// asked to.
func openStore(ctx context.Context, url string, demoUsers bool, log *slog.Logger) (store.Store, error) {
	opened, err := store.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open message store: %w", err)
	}
	st := store.WithMetrics(opened)
	if demoUsers {
		if err := st.UpsertUsers(ctx, store.DemoUsers()); err != nil {
			st.Close()
			return nil, fmt.Errorf("load demo users: %w", err)
		}
		discard(log).Info("demo users loaded", "users", len(store.DemoUsers()))
		canned, err := st.CannedReplies(ctx)
		if err == nil && len(canned) == 0 {
			for _, r := range store.DemoCannedReplies() {
				if err = st.SaveCannedReply(ctx, r, time.Now()); err != nil {
					break
				}
			}
		}
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("load demo canned replies: %w", err)
		}
	}
	return st, nil
}

// bindTokens returns the verifier of -jwt-secret (nil without one) and
// refuses a worker that could bind nobody.
func (cfg WorkerConfig) bindTokens() (*bindtoken.Verifier, error) {
	if cfg.JWTSecret == "" {
		if !cfg.InsecureBind {
			return nil, errors.New("worker: binds need signed tokens: set -jwt-secret (at least 32 bytes, shared with the application that signs them), or -insecure-bind to accept the seed's token-less bind")
		}
		return nil, nil
	}
	v, err := bindtoken.NewVerifier([]byte(cfg.JWTSecret))
	if err != nil {
		return nil, fmt.Errorf("worker: -jwt-secret: %w", err)
	}
	return v, nil
}

func serveWorker(ctx context.Context, cfg WorkerConfig, dir directory.Directory, st store.Store, log *slog.Logger) error {
	log = discard(log).With("role", "worker")
	if cfg.Secret == "" {
		return errors.New("worker: a shared secret is required (-secret)")
	}
	if len(cfg.Registers) == 0 {
		return errors.New("worker: at least one register address is required (-register)")
	}
	if (cfg.PushAddr != "" || cfg.PushHTTPAddr != "") && cfg.PushToken == "" {
		return errors.New("worker: the Push API needs a bearer token (-push-token), or disable it with -push-addr '' -push-http-addr ''")
	}
	var pushTLS *tls.Config
	if cfg.PushTLSCert != "" || cfg.PushTLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.PushTLSCert, cfg.PushTLSKey)
		if err != nil {
			return fmt.Errorf("worker: push api TLS certificate: %w", err)
		}
		pushTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	tokens, err := cfg.bindTokens()
	if err != nil {
		return err
	}
	dial, err := dialOptions(cfg.Secret, cfg.TLS)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	cfg.DialOptions = append(cfg.DialOptions, dial...)
	images, err := cfg.images(st)
	if err != nil {
		return err
	}
	w := worker.New(cfg.Config, dir, log)
	agentCap := cfg.AgentCap
	if agentCap <= 0 {
		agentCap = -1 // no cap
	}
	dk := desk.New(desk.Config{MaxOpen: agentCap, Grace: cfg.PresenceGrace, Images: images}, w.API(), st, log)
	defer dk.Close() // after the chat's Close
	h := chat.New(chat.Config{Tokens: tokens, InsecureBind: cfg.InsecureBind, SaveLinger: cfg.SaveLinger, Extension: dk}, w.API(), st, log)
	defer h.Close() // after w.Run returned: no event is in flight
	reg, err := register.NewClient(cfg.Registers, log, dial...)
	if err != nil {
		return err
	}
	defer reg.Close()

	g, gctx := errgroup.WithContext(ctx)
	if err := startMetrics(gctx, g, "worker", cfg.Metrics, log); err != nil {
		return err
	}
	pushServer := push.NewServer(w.API())
	if cfg.PushHTTPAddr != "" {
		lis, err := listen("worker push http api", cfg.PushHTTPAddr)
		if err != nil {
			return err
		}
		if pushTLS != nil {
			lis = tls.NewListener(lis, pushTLS)
		}
		log.Info("push http api listening", "addr", lis.Addr().String(), "tls", pushTLS != nil)
		g.Go(func() error { return serveHTTP(gctx, push.HTTPHandler(pushServer, cfg.PushToken), lis, 0) })
	}
	if cfg.PushAddr != "" {
		lis, err := listen("worker push api", cfg.PushAddr)
		if err != nil {
			return err
		}
		var opts []grpc.ServerOption
		if pushTLS != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(pushTLS)))
		}
		gs, _ := newGRPCServer(cfg.PushToken, opts...)
		pushv1.RegisterPushServiceServer(gs, pushServer)
		log.Info("push api listening", "addr", lis.Addr().String(), "tls", pushTLS != nil)
		g.Go(func() error { return serveGRPC(gctx, gs, lis) })
	}
	g.Go(func() error { reg.Watch(gctx, w.SetGateways); return nil })
	g.Go(func() error { dk.Run(gctx); return nil })
	g.Go(func() error { return w.Run(gctx, h) })
	return g.Wait()
}
