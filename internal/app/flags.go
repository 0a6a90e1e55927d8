package app

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gatewire/gatewire/internal/chat"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/worker"
)

// EnvPrefix prefixes the environment variable of every flag
// (see package flagenv): -ws-addr is also GATEWIRE_WS_ADDR.
const EnvPrefix = "GATEWIRE"

// listFlag is a comma-separated list flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

// LogFlags registers -log-level and -log-format and returns a function that
// builds the logger they describe.
func LogFlags(fs *flag.FlagSet) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("-log-level: %w", err)
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
		default:
			return nil, fmt.Errorf("-log-format: want text or json, got %q", *format)
		}
	}
}

// clusterFlags registers the flags every cluster process has.
func clusterFlags(fs *flag.FlagSet, secret *string, t *TLSConfig, registers *[]string) {
	fs.StringVar(secret, "secret", "", "shared secret of the cluster's inner links (required)")
	fs.StringVar(&t.Cert, "tls-cert", "", "PEM certificate this process presents on inner links (mutual TLS, with -tls-key and -tls-ca)")
	fs.StringVar(&t.Key, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&t.CA, "tls-ca", "", "PEM CA bundle that signs every cluster process's certificate")
	fs.StringVar(&t.ServerName, "tls-server-name", "", "name inner-link server certificates must carry ('' accepts any the CA signed)")
	if registers != nil {
		*registers = []string{"127.0.0.1:1236"}
		fs.Var(listFlag{registers}, "register", "register replica addresses, comma-separated")
	}
}

func metricsFlags(fs *flag.FlagSet, m *MetricsConfig, def string) {
	fs.StringVar(&m.Addr, "metrics-addr", def, "HTTP listen address of /metrics (Prometheus) and /healthz ('' disables them)")
	fs.BoolVar(&m.Pprof, "pprof", false, "also serve Go's profiles at /debug/pprof/ on -metrics-addr (CPU, heap, goroutines; keep that address private)")
}

func redisFlags(fs *flag.FlagSet, r *RedisConfig) {
	fs.StringVar(&r.Addr, "redis", "127.0.0.1:6379", "Redis: host:port, comma-separated cluster nodes, or a redis:// URL")
	fs.StringVar(&r.Prefix, "redis-prefix", "gatewire:", "prefix of every Redis key")
}

// RegisterFlags registers a register process's flags into cfg.
func RegisterFlags(fs *flag.FlagSet, cfg *RegisterConfig) {
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:1236", "gRPC listen address")
	fs.DurationVar(&cfg.Lease, "lease", 0, "gateway lease; a gateway silent this long is dropped and its entries purged (0 = 5s)")
	metricsFlags(fs, &cfg.Metrics, "127.0.0.1:9236")
	clusterFlags(fs, &cfg.Secret, &cfg.TLS, nil)
	redisFlags(fs, &cfg.Redis)
}

// gatewayClientFlags registers the flags about client connections, shared
// by the gateway and the all-in-one.
func gatewayClientFlags(fs *flag.FlagSet, cfg *GatewayConfig) {
	fs.StringVar(&cfg.WSAddr, "ws-addr", "127.0.0.1:8282", "WebSocket listen address (path /)")
	fs.StringVar(&cfg.PublicAddress, "public-address", "", "host:port clients use to reach this gateway (default: the -ws-addr bound)")
	fs.Int64Var(&cfg.ReadLimit, "read-limit", 64<<10, "largest frame a client may send, in bytes")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 25e9, "how often clients are pinged (negative disables)")
	fs.IntVar(&cfg.PingMisses, "ping-misses", 2, "unanswered pings in a row that close a client")
	fs.IntVar(&cfg.SendQueue, "send-queue", 256, "frames that may wait for one client before it is closed as too slow (1013)")
	fs.Int64Var(&cfg.SendQueueBytes, "send-queue-bytes", gateway.DefaultSendQueueBytes, "bytes that may wait for one client before it is closed as too slow (1013)")
	fs.Float64Var(&cfg.MessageRate, "message-rate", gateway.DefaultMessageRate, "frames per second one client may send; more get a rate_limited error frame (negative disables)")
	fs.IntVar(&cfg.MessageBurst, "message-burst", 2*gateway.DefaultMessageRate, "frames a client may send at once beyond -message-rate")
	fs.IntVar(&cfg.RateStrikes, "rate-strikes", gateway.DefaultRateStrikes, "frames over the rate a client may send (refilled one per second) before it is closed with 1008")
	fs.IntVar(&cfg.MaxConns, "max-conns", gateway.DefaultMaxConns, "connections this gateway accepts; more get HTTP 503 (negative: no limit)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", gateway.DefaultMaxConnsPerIP, "connections from one client IP; more get HTTP 429 (negative: no limit)")
	fs.Var(listFlag{&cfg.TrustedProxies}, "trusted-proxies", "load balancers (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", 10e9, "time a client has to send its WebSocket handshake request")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", gateway.DefaultDrainTimeout, "on SIGTERM, time clients have to finish their close (1012) before they are cut")
	fs.Var(listFlag{&cfg.OriginPatterns}, "origins", "browser origins allowed besides the gateway's own host, comma-separated host patterns (e.g. chat.example.com,*.example.com)")
}

// GatewayFlags registers a gateway process's flags into cfg.
func GatewayFlags(fs *flag.FlagSet, cfg *GatewayConfig) {
	gatewayClientFlags(fs, cfg)
	fs.StringVar(&cfg.LinkAddr, "link-addr", "127.0.0.1:2000", "gRPC listen address for workers")
	fs.StringVar(&cfg.LinkAdvertise, "link-advertise", "", "address workers dial to reach -link-addr (default: the address bound)")
	metricsFlags(fs, &cfg.Metrics, "127.0.0.1:9282")
	clusterFlags(fs, &cfg.Secret, &cfg.TLS, &cfg.Registers)
	redisFlags(fs, &cfg.Redis)
}

// workerChatFlags registers the flags of the worker's business side, shared
// by the worker and the all-in-one.
func workerChatFlags(fs *flag.FlagSet, cfg *WorkerConfig, defaultPushAddr, defaultPushHTTPAddr string) {
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "HS256 secret (at least 32 bytes) of the bind tokens the application signs (\"sub\" = uid, \"exp\"); required unless -insecure-bind")
	fs.BoolVar(&cfg.InsecureBind, "insecure-bind", false, "accept the seed's token-less bind (any client may claim any uid)")
	fs.IntVar(&cfg.Lanes, "lanes", 64, "clients whose events are handled at once")
	fs.DurationVar(&cfg.PostLinger, "post-linger", worker.DefaultPostLinger, "how long a frame nobody waits for (a say's save) may wait for another command to its gateway to share a message with: longer wakes the gateways less often and delays those frames more (0: no wait)")
	fs.StringVar(&cfg.PushAddr, "push-addr", defaultPushAddr, "Push API gRPC listen address ('' disables it)")
	fs.StringVar(&cfg.PushToken, "push-token", "", "bearer token Push API callers must send (required with -push-addr or -push-http-addr)")
	fs.StringVar(&cfg.PushHTTPAddr, "push-http-addr", defaultPushHTTPAddr, "Push API HTTP/JSON listen address, POST /v1/<Method> ('' disables it)")
	fs.StringVar(&cfg.PushTLSCert, "push-tls-cert", "", "PEM certificate to serve the Push API over TLS (with -push-tls-key)")
	fs.StringVar(&cfg.PushTLSKey, "push-tls-key", "", "PEM private key of -push-tls-cert")
	fs.StringVar(&cfg.WebSocketURL, "ws-url", "", "WebSocket URL the chat page connects to (default: the page's own host)")
	fs.DurationVar(&cfg.SaveLinger, "save-linger", chat.DefaultSaveLinger, "under steady traffic, how long a say's write waits for others to share its database commit: longer costs the database less per say and each say more latency (0: no wait)")
	fs.IntVar(&cfg.AgentCap, "agent-cap", 5, "open conversations the desk assigns one agent at most; more wait in the queue (0: no cap)")
	fs.DurationVar(&cfg.PresenceGrace, "presence-grace", 30e9, "how long an agent may be without any connection before the desk sets them offline")
	fs.Var(listFlag{&cfg.DeskOrigins}, "desk-origins", "sites (host patterns, comma-separated) that may embed the desk's widget; they also need the gateways' -origins (all-in-one default: -origins)")
	fs.StringVar(&cfg.ImageDir, "image-dir", "", "directory for uploaded images ('' keeps them in the store)")
	fs.Int64Var(&cfg.MaxImageBytes, "image-max-bytes", 5<<20, "largest image upload, in bytes")
	fs.Float64Var(&cfg.VisitorTokenRate, "desk-token-rate", 60, "visitor tokens one client IP may get a minute from POST /desk/visitor; more get HTTP 429 (0: no limit)")
	fs.Float64Var(&cfg.ImageRate, "image-rate", 20, "image uploads one client IP may make a minute; more get HTTP 429 (0: no limit)")
}

// WorkerFlags registers a worker process's flags into cfg.
func WorkerFlags(fs *flag.FlagSet, cfg *WorkerConfig) {
	workerChatFlags(fs, cfg, "127.0.0.1:2100", "127.0.0.1:2180")
	fs.StringVar(&cfg.Store, "store", "", "message store: postgres://user@host/db or sqlite:<path> (required)")
	fs.BoolVar(&cfg.DemoUsers, "demo-users", false, "load the seed's five demo users (85-89) into the store at start")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "chat page HTTP listen address ('' disables it)")
	fs.Var(listFlag{&cfg.TrustedProxies}, "trusted-proxies", "load balancers (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client")
	fs.DurationVar(&cfg.DirectoryCache, "directory-cache", 5e9, "how long a uid's connections may be answered from memory; every change reaches the worker at once over Redis pub/sub, and without that feed it reads Redis (0 disables)")
	metricsFlags(fs, &cfg.Metrics, "127.0.0.1:9283")
	clusterFlags(fs, &cfg.Secret, &cfg.TLS, &cfg.Registers)
	redisFlags(fs, &cfg.Redis)
}

// AllInOneFlags registers the all-in-one's flags into cfg.
func AllInOneFlags(fs *flag.FlagSet, cfg *AllInOneConfig) {
	gatewayClientFlags(fs, &cfg.Gateway)
	workerChatFlags(fs, &cfg.Worker, "", "")
	fs.StringVar(&cfg.Worker.Store, "store", "sqlite:gatewire.db", "message store: sqlite:<path> or postgres://user@host/db")
	metricsFlags(fs, &cfg.Gateway.Metrics, "127.0.0.1:9280")
	fs.BoolVar(&cfg.Demo, "demo", false, "demo mode: GET /demo/token?uid= hands out a bind token for any uid, and the chat page uses it (never in production)")
}
