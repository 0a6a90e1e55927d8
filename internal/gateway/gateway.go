// Package gateway holds client WebSocket connections and nothing else: it
// forwards each client's events to one worker over that worker's link (a
// gRPC stream), executes the commands workers send back (send, close, bind,
// unbind) and keeps the directory entries of its own connections.
//
// Each connection has exactly one reader goroutine; frames are written by
// the goroutine that sends them, through a wire that never blocks (what
// the socket does not take waits in a bounded backlog, see outbox). A
// client that does not read fast enough is closed, never allowed to block
// others. A client's events go to one worker
// (sticky) so they are handled in order; when that worker's link ends, the
// next event picks another. Start with New; serve Gateway as the WebSocket
// http.Handler and register it as the linkv1 service.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/directory"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// Defaults of the Config limits (the flags show the same values).
const (
	DefaultSendQueueBytes = 1 << 20
	DefaultMessageRate    = 100
	DefaultRateStrikes    = 20
	DefaultMaxConns       = 100000
	DefaultMaxConnsPerIP  = 1000
	DefaultDrainTimeout   = 10 * time.Second
)

// Config configures a Gateway. Zero values mean the documented defaults.
type Config struct {
	// ID is the gateway id; zero means a fresh random one (clientid.NewGatewayID).
	ID string
	// PublicAddress is the host:port clients connect to, reported to workers.
	PublicAddress string
	// ReadLimit is the largest frame a client may send, in bytes; zero means
	// 64 KiB. A larger frame closes the connection with 1009.
	ReadLimit int64
	// PingInterval is how often clients are pinged; zero means 25s, negative
	// disables pings.
	PingInterval time.Duration
	// PingMisses is how many unanswered pings in a row close a connection;
	// zero means 2.
	PingMisses int
	// SendQueue is how many frames may wait for one client; zero means 256.
	SendQueue int
	// SendQueueBytes bounds the bytes waiting for one client; zero means
	// 1 MiB. A client whose queue overflows (in frames or bytes) is too
	// slow: it is closed with 1013, or cut off when not even the close
	// frame gets through. Its messages stay in the store for catch-up.
	SendQueueBytes int64
	// MessageRate is how many frames per second one client may send; zero
	// means 100, negative disables the limit. A frame over the limit is
	// dropped and answered with an error frame (code "rate_limited").
	MessageRate float64
	// MessageBurst is how many frames a client may send at once beyond the
	// rate; zero means twice MessageRate.
	MessageBurst int
	// RateStrikes is how many frames over the limit a client may send
	// (refilled at one per second) before it is closed with 1008; zero
	// means 20.
	RateStrikes int
	// MaxConns bounds the gateway's connections (more get HTTP 503); zero
	// means 100000, negative none.
	MaxConns int
	// MaxConnsPerIP bounds the connections from one client IP (more get
	// HTTP 429); zero means 1000, negative none.
	MaxConnsPerIP int
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client (for the per-IP limit and the events' remote address).
	TrustedProxies []netip.Prefix
	// DrainTimeout bounds Close: connections that have not finished their
	// close handshake by then are cut; zero means 10s.
	DrainTimeout time.Duration
	// WriteTimeout is how long a client's socket may take no bytes while
	// some wait for it; then the client is cut. Zero means 10s.
	WriteTimeout time.Duration
	// WorkerWait is how long an event waits for a worker when none is
	// linked; zero means 3s. After that the client is closed with 1013.
	WorkerWait time.Duration
	// OriginPatterns lists the browser origins allowed besides the
	// gateway's own host (see websocket.AcceptOptions.OriginPatterns).
	OriginPatterns []string
	// DirectoryTimeout bounds each directory call; zero means 2s.
	DirectoryTimeout time.Duration
}

func (c *Config) fill() error {
	if c.ID == "" {
		c.ID = clientid.NewGatewayID()
	}
	if !clientid.ValidGatewayID(c.ID) {
		return fmt.Errorf("gateway: invalid id %q", c.ID)
	}
	defaults := []struct {
		v *time.Duration
		d time.Duration
	}{{&c.PingInterval, 25 * time.Second}, {&c.WriteTimeout, 10 * time.Second}, {&c.WorkerWait, 3 * time.Second},
		{&c.DirectoryTimeout, 2 * time.Second}, {&c.DrainTimeout, DefaultDrainTimeout}}
	for _, x := range defaults {
		if *x.v == 0 {
			*x.v = x.d
		}
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 64 << 10
	}
	if c.PingMisses == 0 {
		c.PingMisses = 2
	}
	if c.SendQueue == 0 {
		c.SendQueue = 256
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.MessageRate == 0 {
		c.MessageRate = DefaultMessageRate
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = max(1, int(2*c.MessageRate))
	}
	if c.RateStrikes == 0 {
		c.RateStrikes = DefaultRateStrikes
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.ReadLimit < 0 || c.PingMisses < 0 || c.SendQueue < 0 || c.SendQueueBytes < 0 || c.MessageBurst < 0 || c.RateStrikes < 0 {
		return errors.New("gateway: read limit, ping misses, send queue, burst and strikes must not be negative")
	}
	return nil
}

// Gateway holds client connections and serves worker links.
type Gateway struct {
	linkv1.UnimplementedLinkServiceServer

	cfg Config
	dir directory.Directory
	log *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	seq    atomic.Uint64
	wg     sync.WaitGroup // connection goroutines and their cleanups (closer)
	admit  admission
	closer closer // the ended connections' cleanups
	// rateLimited is the error frame a frame over the rate limit gets.
	rateLimited []byte
	writeRule   writeRule // how every connection's wire writes

	connsMu sync.RWMutex
	conns   map[string]*conn

	linksMu   sync.Mutex
	links     map[*link]struct{}
	linkAdded chan struct{} // closed and replaced when a link arrives

	closeOnce   sync.Once
	acceptingMu sync.RWMutex // held for writing while Close starts; guards closed
	closed      bool
	closeFrame  frame // the close every connection gets once closed is set
}

// New returns a Gateway that keeps its connections' entries in dir.
func New(cfg Config, dir directory.Directory, log *slog.Logger) (*Gateway, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rateLimited, _ := json.Marshal(map[string]string{
		"type": "error", "code": "rate_limited",
		"message": fmt.Sprintf("too many messages: at most %g per second; this one was dropped", cfg.MessageRate),
	})
	return &Gateway{
		rateLimited: rateLimited,
		cfg:         cfg, dir: dir, log: log.With("gateway_id", cfg.ID),
		ctx: ctx, cancel: cancel, admit: admission{max: cfg.MaxConns, perIP: cfg.MaxConnsPerIP},
		conns: make(map[string]*conn), links: make(map[*link]struct{}), linkAdded: make(chan struct{}),
		// The send queue's limit closes a slow client first; beyond it, a
		// wire owes only what the library writes by itself (pongs, a close).
		writeRule: writeRule{timeout: cfg.WriteTimeout, limit: cfg.SendQueueBytes + min(backlogSlack, math.MaxInt64-cfg.SendQueueBytes)},
	}, nil
}

// backlogSlack is how far past the send queue's byte limit a wire may owe
// its client: room for the control frames the library writes on its own.
const backlogSlack = 64 << 10

// ID returns the gateway's id, the prefix of its client_ids.
func (g *Gateway) ID() string { return g.cfg.ID }

// Close stops accepting connections, closes every client connection with
// status and reason and waits for the connections' goroutines; connections
// still open after Config.DrainTimeout are cut. It is idempotent.
func (g *Gateway) Close(status websocket.StatusCode, reason string) {
	g.closeOnce.Do(func() {
		g.acceptingMu.Lock()
		g.closed = true
		g.closeFrame = frame{close: true, status: status, reason: reason}
		g.acceptingMu.Unlock()
		// A connection registered after this loop sees closed in register.
		g.connsMu.RLock()
		for _, c := range g.conns {
			c.enqueue(g.closeFrame)
		}
		g.connsMu.RUnlock()
		done := make(chan struct{})
		go func() { g.wg.Wait(); close(done) }()
		t := time.NewTimer(g.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			left := g.snapshot()
			g.log.Warn("drain timeout: cutting connections", "connections", len(left), "timeout", g.cfg.DrainTimeout)
			for _, c := range left {
				c.cut()
			}
			<-done
		}
		g.cancel()
	})
}

// ConnCount returns the number of open client connections.
func (g *Gateway) ConnCount() int {
	g.connsMu.RLock()
	defer g.connsMu.RUnlock()
	return len(g.conns)
}

// snapshot returns the open connections.
func (g *Gateway) snapshot() []*conn {
	g.connsMu.RLock()
	defer g.connsMu.RUnlock()
	out := make([]*conn, 0, len(g.conns))
	for _, c := range g.conns {
		out = append(out, c)
	}
	return out
}

// connsOf returns the connections of ids, nil for those it does not hold.
func (g *Gateway) connsOf(ids []string) []*conn {
	out := make([]*conn, len(ids))
	g.connsMu.RLock()
	defer g.connsMu.RUnlock()
	for i, id := range ids {
		out[i] = g.conns[id]
	}
	return out
}

func (g *Gateway) conn(id string) *conn {
	g.connsMu.RLock()
	defer g.connsMu.RUnlock()
	return g.conns[id]
}

// Republish writes the directory entries of every bound connection again,
// after the register reported that they may have been purged or lost.
func (g *Gateway) Republish(ctx context.Context) error {
	var errs []error
	n := 0
	for _, c := range g.snapshot() {
		ok, err := c.rebind(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			n++
		}
	}
	g.log.Info("re-published bindings", "bindings", n, "errors", len(errs))
	return errors.Join(errs...)
}
