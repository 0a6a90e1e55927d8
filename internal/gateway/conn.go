package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/clientip"
	"github.com/gatewire/gatewire/internal/metrics"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// frame is what enqueue sends a connection.
type frame struct {
	data   []byte
	binary bool
	// close, when set, closes the connection with status/reason after the
	// frames sent before it.
	close  bool
	status websocket.StatusCode
	reason string
}

// conn is one client connection.
type conn struct {
	id       string
	g        *Gateway
	ws       *websocket.Conn
	wire     *wire
	peer     netip.Addr  // the client's address, as admitted
	slow     atomic.Bool // the queue overflowed: closing
	throttle *throttle

	// Frames are written by the goroutine that sends them, through a wire
	// that never blocks (see outbox); the pinger runs only while it has
	// work, and the reader sits in a small stack while the client is
	// silent (wire): an idle connection costs one parked goroutine and
	// little else.
	gmu       sync.Mutex     // guards the fields below; held across a frame's write
	waiting   int            // frames written behind owed bytes since the wire last owed none
	closing   bool           // a close handshake has started: no frame follows it
	done      bool           // no new pinger or close handshake starts
	pingTimer *time.Timer    // fires the next ping
	misses    int            // unanswered pings in a row; the pinger's alone
	running   sync.WaitGroup // the pinger and the close handshake

	ctx    context.Context // ends when the connection is finished
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below; held across directory calls for this connection
	uid     string
	groups  map[string]struct{}
	session []byte // a JSON object, nil when empty
	version uint64 // counts changes of uid and session
	closed  bool
	worker  *link

	finishOnce sync.Once

	draining bool // the reader only drains: the connection is closing
}

// ServeHTTP accepts a WebSocket client.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.acceptingMu.RLock()
	closed := g.closed
	if !closed {
		g.wg.Add(1)
	}
	g.acceptingMu.RUnlock()
	if closed {
		metrics.ConnectionsRefused.WithLabelValues("shutting_down").Inc()
		http.Error(w, "gateway is shutting down", http.StatusServiceUnavailable)
		return
	}
	handedOff := false // to the connection's goroutine, which calls g.wg.Done
	defer func() {
		if !handedOff {
			g.wg.Done()
		}
	}()

	remote := clientip.FromRequest(r, g.cfg.TrustedProxies)
	if err := g.admit.admit(remote.Addr()); err != nil {
		metrics.ConnectionsRefused.WithLabelValues(err.limit).Inc()
		g.log.Warn("connection refused", "remote", remote, "err", err)
		http.Error(w, err.reason, err.status)
		return
	}
	h := &hijacker{ResponseWriter: w, rule: &g.writeRule}
	ws, err := websocket.Accept(h, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.OriginPatterns})
	if err != nil {
		g.admit.release(remote.Addr())
		g.log.Debug("websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(g.cfg.ReadLimit)
	// Not a child of g.ctx: Close ends every connection itself (its close
	// frame, then cut), and a child would cost each connection an entry in
	// g.ctx's children and a Done channel.
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		id: clientid.Make(g.cfg.ID, g.seq.Add(1)), g: g, ws: ws, wire: h.wire, peer: remote.Addr(),
		ctx: ctx, cancel: cancel,
		throttle: newThrottle(g.cfg.MessageRate, g.cfg.MessageBurst, g.cfg.RateStrikes),
	}
	h.wire.onBroken(c.cut)
	metrics.Connections.Inc()
	g.register(c)
	ev := &linkv1.Event{ClientId: c.id, Kind: &linkv1.Event_Connected{Connected: connected(r, hostPort(remote, r.RemoteAddr), g.cfg.PublicAddress)}}
	// The connection is hijacked: it outlives this handler, whose
	// goroutine (and its large stack) can go.
	handedOff = true
	go c.serve(ev)
}

// serve runs the connection after its handshake: it reports the connect
// and reads.
func (c *conn) serve(connect *linkv1.Event) {
	c.schedulePing()
	if !c.g.dispatch(c.ctx, c, connect) {
		c.closeWith(websocket.StatusTryAgainLater, "no worker available")
		c.draining = true
	}
	c.read()
}

// read reads the client's frames until the client falls silent, then
// hands the connection to a fresh goroutine that waits in a small stack
// (see wire) and reads on; when the connection ends it cleans up. One
// goroutine at a time runs read, and owns draining.
func (c *conn) read() {
	var err error
	if c.draining {
		err = c.drain()
	} else {
		err = c.readLoop()
	}
	if errors.Is(err, errIdle) {
		go c.await()
		return
	}
	c.end(err)
}

// await waits for the client to send something, then reads it.
func (c *conn) await() {
	c.wire.waitReadable()
	c.read()
}

// end cleans up after the connection's last read.
func (c *conn) end(readErr error) {
	c.finish(readErr)
	c.gmu.Lock()
	c.done = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.gmu.Unlock()
	c.running.Wait()
	metrics.Connections.Dec()
	c.g.admit.release(c.peer)
	c.g.wg.Done()
}

// register adds c to the gateway's connections; if the gateway started
// closing meanwhile (its handshake raced Close), c is closed too.
func (g *Gateway) register(c *conn) {
	g.connsMu.Lock()
	g.conns[c.id] = c
	g.connsMu.Unlock()
	g.acceptingMu.RLock()
	closed, f := g.closed, g.closeFrame
	g.acceptingMu.RUnlock()
	if closed {
		c.enqueue(f)
	}
}

func connected(r *http.Request, remote, public string) *linkv1.Connected {
	ev := &linkv1.Connected{
		RemoteAddress: remote, GatewayAddress: public,
		Path: r.URL.Path, Query: r.URL.RawQuery,
	}
	if ev.GatewayAddress == "" {
		ev.GatewayAddress = r.Host
	}
	for name, values := range r.Header {
		ev.Headers = append(ev.Headers, &linkv1.Header{Name: name, Values: values})
	}
	return ev
}

// readLoop forwards the client's frames until the connection ends or the
// client falls silent (errIdle).
func (c *conn) readLoop() error {
	for {
		if c.wire.idleNow() {
			return errIdle
		}
		typ, data, err := c.ws.Read(noDeadline)
		if err != nil {
			return err
		}
		metrics.FramesReceived.Inc()
		switch c.throttle.check() {
		case refuseFrame:
			metrics.RateLimitRefused.Inc()
			c.enqueue(frame{data: c.g.rateLimited})
			continue
		case closeAbuser:
			metrics.RateLimitClosed.Inc()
			c.g.log.Info("closing client over the message rate limit", "client_id", c.id)
			c.closeWith(websocket.StatusPolicyViolation, "message rate limit exceeded")
			return c.drainFromNow()
		}
		uid, session, version := c.state()
		ev := &linkv1.Event{ClientId: c.id, Uid: uid, Session: session, StateVersion: version,
			Kind: &linkv1.Event_Message{Message: &linkv1.Message{Data: data, Binary: typ == websocket.MessageBinary}}}
		if !c.g.dispatch(c.ctx, c, ev) {
			if c.ctx.Err() == nil {
				c.closeWith(websocket.StatusTryAgainLater, "no worker available")
			}
			return c.drainFromNow()
		}
	}
}

// noDeadline is the context of a connection's reads and frame writes. A
// read ends when the connection is closed (a close handshake, cut or
// CloseNow), which every end of a connection does, and a write never
// waits (see outbox); a context with a Done channel would make the library
// arm and disarm a callback for every read and write.
var noDeadline = context.Background()

// drainFromNow makes the reader only drain, now and after every silence.
func (c *conn) drainFromNow() error {
	c.draining = true
	return c.drain()
}

// drain reads until the connection is closed, so that a close handshake
// can complete, and returns the error that ended it (or errIdle).
func (c *conn) drain() error {
	for {
		if _, _, err := c.ws.Read(noDeadline); err != nil {
			return err
		}
	}
}

// cut ends the connection at once, without a close handshake.
func (c *conn) cut() {
	c.cancel()
	_ = c.ws.CloseNow()
}

// schedulePing arms the next ping, unless pings are off or the connection
// is done.
func (c *conn) schedulePing() {
	if c.g.cfg.PingInterval <= 0 {
		return
	}
	c.gmu.Lock()
	defer c.gmu.Unlock()
	if c.done {
		return
	}
	if c.pingTimer == nil {
		c.pingTimer = time.AfterFunc(c.g.cfg.PingInterval, c.ping)
	} else {
		c.pingTimer.Reset(c.g.cfg.PingInterval)
	}
}

// ping pings the client once (on the timer's goroutine) and closes it
// after PingMisses unanswered pings in a row.
func (c *conn) ping() {
	c.gmu.Lock()
	if c.done {
		c.gmu.Unlock()
		return
	}
	c.running.Add(1)
	c.gmu.Unlock()
	defer c.running.Done()

	// Not a child of c.ctx (Ping returns when the connection closes), so
	// that c.ctx needs no Done channel nor list of children.
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.PingInterval)
	err := c.ws.Ping(ctx)
	cancel()
	switch {
	case c.ctx.Err() != nil:
		return
	case err == nil:
		c.misses = 0
	default:
		if c.misses++; c.misses >= c.g.cfg.PingMisses {
			c.g.log.Info("closing client that stopped answering pings", "client_id", c.id, "misses", c.misses)
			c.cut()
			return
		}
	}
	c.schedulePing()
}

// enqueue writes f to the client (or, for a close, starts the close
// handshake) and reports whether it went out. A client that owes more
// than its send queue allows, in frames or in bytes, is closed as too
// slow instead: a client that does not read must not hold memory or
// block its senders.
func (c *conn) enqueue(f frame) bool {
	if c.ctx.Err() != nil || c.slow.Load() {
		return false
	}
	if f.close {
		return c.closeWith(f.status, f.reason)
	}
	c.gmu.Lock()
	if c.closing {
		c.gmu.Unlock()
		return false
	}
	// A frame written while the client is owed bytes waits behind them.
	owed := c.wire.pending()
	if owed == 0 {
		c.waiting = 0
	}
	if c.waiting >= c.g.cfg.SendQueue || owed+int64(len(f.data)) > c.g.cfg.SendQueueBytes {
		frames := c.waiting
		c.gmu.Unlock()
		c.tooSlow(frames, owed)
		return false
	}
	if owed > 0 {
		c.waiting++
	}
	typ := websocket.MessageText
	if f.binary {
		typ = websocket.MessageBinary
	}
	err := c.ws.Write(noDeadline, typ, f.data)
	c.gmu.Unlock()
	if err != nil {
		c.cut()
		return false
	}
	metrics.FramesSent.Inc()
	return true
}

// tooSlow closes a client whose send queue overflowed: its close frame
// waits behind what the client is owed, and if it has not gone out within
// slowCloseGrace the connection is cut.
func (c *conn) tooSlow(frames int, bytes int64) {
	if c.slow.Swap(true) {
		return
	}
	metrics.SlowClientsClosed.Inc()
	c.g.log.Warn("closing slow client: send queue full", "client_id", c.id, "frames", frames, "bytes", bytes)
	c.closeWith(websocket.StatusTryAgainLater, "too slow: send queue full")
	time.AfterFunc(slowCloseGrace, c.cut)
}

// slowCloseGrace is how long a slow client's close frame may take before
// the connection is cut.
const slowCloseGrace = time.Second

// closeWith starts the close handshake, after the frames already
// written, unless one has started or the connection is done.
func (c *conn) closeWith(status websocket.StatusCode, reason string) bool {
	c.gmu.Lock()
	defer c.gmu.Unlock()
	if c.closing || c.done {
		return false
	}
	c.closing = true
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		// Close waits for the peer's close frame, read by the read loop
		// or by Close itself, and neither may give up on a silent wire.
		c.wire.blockFromNowOn()
		_ = c.ws.Close(status, reason)
		c.cancel()
	}()
	return true
}

// state returns the connection's uid and session with their version, as
// events carry them.
func (c *conn) state() (uid string, session []byte, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uid, c.session, c.version
}

// info describes the connection for a Query.
func (c *conn) info(withDetails bool) *linkv1.ClientInfo {
	ci := &linkv1.ClientInfo{ClientId: c.id}
	if !withDetails {
		return ci
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ci.Uid, ci.Session = c.uid, c.session
	for g := range c.groups {
		ci.Groups = append(ci.Groups, g)
	}
	return ci
}

// inGroup reports whether the connection is a member of group.
func (c *conn) inGroup(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.groups[group]
	return ok
}

// join adds the connection to group in the directory.
func (c *conn) join(ctx context.Context, group string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errGone
	}
	if _, ok := c.groups[group]; ok {
		return nil
	}
	if err := c.g.dir.JoinGroup(ctx, c.id, group); err != nil {
		return err
	}
	if c.groups == nil {
		c.groups = make(map[string]struct{})
	}
	c.groups[group] = struct{}{}
	return nil
}

// leave removes the connection from group in the directory.
func (c *conn) leave(ctx context.Context, group string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errGone
	}
	if _, ok := c.groups[group]; !ok {
		return nil
	}
	if err := c.g.dir.LeaveGroup(ctx, c.id, group); err != nil {
		return err
	}
	delete(c.groups, group)
	return nil
}

// setSession replaces (patch false) or merges into (patch true) the session.
func (c *conn) setSession(b []byte, patch bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errGone
	}
	var next []byte
	var err error
	if patch {
		next, err = mergePatch(c.session, b)
	} else {
		next, err = checkSession(b)
	}
	if err != nil {
		return err
	}
	c.session = next
	c.version++
	return nil
}

// errGone reports a command for a connection that has finished.
var errGone = errors.New("connection closed")

// errOtherUID reports an unbind of a uid the connection is not bound to.
var errOtherUID = errors.New("connection bound to another uid")

// bind binds the connection to uid in the directory, replacing an older uid.
func (c *conn) bind(ctx context.Context, uid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errGone
	}
	if c.uid == uid {
		return nil
	}
	if c.uid != "" {
		if err := c.g.dir.Unbind(ctx, c.id, c.uid); err != nil {
			return err
		}
		c.uid = ""
		c.version++
	}
	if err := c.g.dir.Bind(ctx, c.id, uid); err != nil {
		return err
	}
	c.uid = uid
	c.version++
	return nil
}

// unbind removes the connection's binding to uid ("" means whatever uid).
func (c *conn) unbind(ctx context.Context, uid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errGone
	}
	if c.uid == "" {
		return nil
	}
	if uid != "" && uid != c.uid {
		return fmt.Errorf("%w (%s)", errOtherUID, c.uid)
	}
	if err := c.g.dir.Unbind(ctx, c.id, c.uid); err != nil {
		return err
	}
	c.uid = ""
	c.version++
	return nil
}

// rebind writes the connection's directory entries (uid, groups) again.
func (c *conn) rebind(ctx context.Context) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || (c.uid == "" && len(c.groups) == 0) {
		return false, nil
	}
	var errs []error
	if c.uid != "" {
		errs = append(errs, c.g.dir.Bind(ctx, c.id, c.uid))
	}
	for g := range c.groups {
		errs = append(errs, c.g.dir.JoinGroup(ctx, c.id, g))
	}
	return true, errors.Join(errs...)
}

// finish runs once when the connection has ended: it forgets the
// connection and has the gateway's closer remove its directory entries and
// report the close to a worker (cleanUp). The gateway's wait group counts
// that cleanup until it is done.
func (c *conn) finish(err error) {
	c.finishOnce.Do(func() {
		c.cut()
		g := c.g
		g.connsMu.Lock()
		delete(g.conns, c.id)
		g.connsMu.Unlock()
		g.wg.Add(1) // while the connection's own count is held: Close cannot be done waiting
		g.closer.do(func() {
			defer g.wg.Done()
			c.cleanUp(err)
		})
	})
}

// cleanUp removes the ended connection's directory entries and reports its
// close, ended by err, to a worker.
func (c *conn) cleanUp(err error) {
	g := c.g
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DirectoryTimeout)
	defer cancel()
	c.mu.Lock()
	c.closed = true
	uid, session, version := c.uid, c.session, c.version
	if uid != "" {
		if err := g.dir.Unbind(ctx, c.id, uid); err != nil {
			g.log.Error("unbind closed connection", "client_id", c.id, "uid", uid, "err", err)
		}
	}
	for group := range c.groups {
		if err := g.dir.LeaveGroup(ctx, c.id, group); err != nil {
			g.log.Error("leave group of closed connection", "client_id", c.id, "err", err)
		}
	}
	c.mu.Unlock()

	code := websocket.CloseStatus(err)
	if code == -1 {
		code = websocket.StatusAbnormalClosure
	}
	ev := &linkv1.Event{ClientId: c.id, Uid: uid, Session: session, StateVersion: version, Kind: &linkv1.Event_Closed{Closed: &linkv1.Closed{Code: int32(code)}}}
	if !g.dispatch(ctx, c, ev) {
		g.log.Warn("close event not delivered: no worker", "client_id", c.id)
	}
	c.setWorker(nil)
}
