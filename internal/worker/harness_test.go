package worker_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/worker"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// The harness wires real pieces over loopback sockets: gateways serving
// WebSocket clients and worker links, workers running a recording Handler,
// and coder/websocket clients. Everything a cluster starts is stopped by the
// cleanup newCluster registers, in an order that needs no timeouts:
// clients, gateways, workers, servers.

// waitFor bounds every wait of the harness; it is generous because the
// tests assert what happens, not how fast.
const waitFor = 20 * time.Second

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventKind names a Handler method.
type eventKind string

const (
	evConnect   eventKind = "connect"
	evWebSocket eventKind = "websocket"
	evMessage   eventKind = "message"
	evClose     eventKind = "close"
)

// event is one Handler call as the recorder saw it.
type event struct {
	kind   eventKind
	client worker.Client
	req    *worker.Request // evWebSocket only
	msg    worker.Message  // evMessage only
}

// handling tracks, across a cluster's workers, which clients have a
// Handler call running, to catch two calls for one client at once.
type handling struct {
	mu sync.Mutex
	in map[string]string // client_id → the running call
}

// enter notes a call for client id and returns the call already running
// for it, "" when none.
func (h *handling) enter(id, call string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	running := h.in[id]
	h.in[id] = call
	return running
}

func (h *handling) leave(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.in, id)
}

// recorder is a Handler that records every call per client_id, in order. A
// message "echo:<text>" is answered with <text> through the API (same frame
// type); a message held with hold blocks its call until released. It notes
// when two calls for one client overlap, on this worker or another of the
// cluster, which the Handler contract forbids.
type recorder struct {
	name   string
	api    worker.API
	shared *handling

	mu       sync.Mutex
	events   map[string][]event
	holds    map[string]chan struct{} // message data → released when closed
	problems []string
}

func newRecorder(name string, api worker.API, shared *handling) *recorder {
	return &recorder{name: name, api: api, shared: shared,
		events: make(map[string][]event), holds: make(map[string]chan struct{})}
}

func (r *recorder) begin(e event) {
	call := r.name + " " + string(e.kind) + " " + string(e.msg.Data)
	if running := r.shared.enter(e.client.ID, call); running != "" {
		r.problem("overlapping handler calls for " + e.client.ID + ": " + call + " began while " + running + " ran")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[e.client.ID] = append(r.events[e.client.ID], e)
}

func (r *recorder) end(id string) { r.shared.leave(id) }

func (r *recorder) problem(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, s)
}

// hold makes the call for a message with data text block until release is
// called; the test's cleanup releases it too.
func (r *recorder) hold(t testing.TB, text string) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.holds[text] = ch
	r.mu.Unlock()
	release = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(release)
	return release
}

func (r *recorder) OnConnect(_ context.Context, c *worker.Client) {
	r.begin(event{kind: evConnect, client: *c})
	r.end(c.ID)
}

func (r *recorder) OnWebSocketConnect(_ context.Context, c *worker.Client, req *worker.Request) {
	r.begin(event{kind: evWebSocket, client: *c, req: req})
	r.end(c.ID)
}

func (r *recorder) OnMessage(ctx context.Context, c *worker.Client, m worker.Message) {
	r.begin(event{kind: evMessage, client: *c, msg: worker.Message{Data: slices.Clone(m.Data), Binary: m.Binary}})
	defer r.end(c.ID)
	r.mu.Lock()
	held := r.holds[string(m.Data)]
	r.mu.Unlock()
	if held != nil {
		<-held
	}
	if text, ok := strings.CutPrefix(string(m.Data), "echo:"); ok {
		if err := r.api.SendToClient(ctx, c.ID, []byte(text), m.Binary); err != nil {
			r.problem("echo to " + c.ID + ": " + err.Error())
		}
	}
	if uid, ok := strings.CutPrefix(string(m.Data), "bind:"); ok {
		if err := r.api.BindUID(ctx, c.ID, uid); err != nil {
			r.problem("bind " + c.ID + ": " + err.Error())
		}
	}
	if patch, ok := strings.CutPrefix(string(m.Data), "session:"); ok {
		if err := r.api.UpdateSession(ctx, c.ID, json.RawMessage(patch)); err != nil {
			r.problem("update session of " + c.ID + ": " + err.Error())
		}
	}
}

func (r *recorder) OnClose(_ context.Context, c *worker.Client) {
	r.begin(event{kind: evClose, client: *c})
	r.end(c.ID)
}

// eventsOf returns a copy of the events recorded for a client.
func (r *recorder) eventsOf(id string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[id])
}

// messagesOf returns the data of the messages recorded for a client.
func (r *recorder) messagesOf(id string) []string {
	var out []string
	for _, e := range r.eventsOf(id) {
		if e.kind == evMessage {
			out = append(out, string(e.msg.Data))
		}
	}
	return out
}

func (r *recorder) has(id string, kind eventKind) bool {
	for _, e := range r.eventsOf(id) {
		if e.kind == kind {
			return true
		}
	}
	return false
}

// idByTag returns the client_id whose handshake query carried tag=tag.
func (r *recorder) idByTag(tag string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, evs := range r.events {
		for _, e := range evs {
			if e.kind != evWebSocket {
				continue
			}
			if q, err := url.ParseQuery(e.req.Query); err == nil && q.Get("tag") == tag {
				return id
			}
		}
	}
	return ""
}

// checkNoProblems fails the test when the handler saw a contract breach or
// an echo failed, and forgets what it reported.
func (r *recorder) checkNoProblems(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
	r.problems = nil
}

// gatewayServer is a gateway served on two loopback listeners.
type gatewayServer struct {
	gw       *gateway.Gateway
	wsAddr   string
	linkAddr string

	http     *http.Server
	grpc     *grpc.Server
	serveErr chan error // one value per Serve goroutine
}

// info is the register's view of the gateway.
func (g *gatewayServer) info() *registerv1.Gateway {
	return &registerv1.Gateway{Id: g.gw.ID(), LinkAddress: g.linkAddr, PublicAddress: g.wsAddr}
}

// workerRun is a worker running a recorder.
type workerRun struct {
	w      *worker.Worker
	rec    *recorder
	cancel context.CancelFunc
	done   chan error // Run's result

	once     sync.Once
	returned bool  // Run returned after cancel
	err      error // what Run returned
}

// halt cancels Run and waits up to waitFor for it to return.
func (r *workerRun) halt() {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
			r.returned = true
		case <-time.After(waitFor):
		}
	})
}

// stop halts the worker, fails the test when Run does not return, and
// returns Run's error.
func (r *workerRun) stop(t testing.TB) error {
	t.Helper()
	r.halt()
	if !r.returned {
		t.Fatal("worker Run did not return after its context ended")
	}
	return r.err
}

// wsMsg is one frame a client received.
type wsMsg struct {
	typ  websocket.MessageType
	data string
}

// client is a WebSocket client. A reading client reads in the background
// and keeps what it reads; a non-reading client never calls Read (so it
// answers no ping and no close) until read is called.
type client struct {
	ws    *websocket.Conn
	tag   string
	local string // the client's local host:port

	mu      sync.Mutex
	msgs    []wsMsg
	readErr error
	done    chan struct{} // closed when the reader stopped; nil before read
}

// read starts the background reader.
func (c *client) read() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			typ, data, err := c.ws.Read(context.Background())
			c.mu.Lock()
			if err != nil {
				c.readErr = err
				c.mu.Unlock()
				return
			}
			c.msgs = append(c.msgs, wsMsg{typ: typ, data: string(data)})
			c.mu.Unlock()
		}
	}()
}

func (c *client) messages() []wsMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// waitMessages waits until the client has read at least n frames and
// returns all it has read.
func (c *client) waitMessages(t testing.TB, n int) []wsMsg {
	t.Helper()
	eventually(t, strconv.Itoa(n)+" frames at client "+c.tag, func() bool { return len(c.messages()) >= n })
	return c.messages()
}

// closed reports whether the reader has stopped.
func (c *client) closed() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// waitClosed waits for the reader to stop and returns the error that
// stopped it.
func (c *client) waitClosed(t testing.TB) error {
	t.Helper()
	eventually(t, "client "+c.tag+" to be closed", c.closed)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

func (c *client) send(t testing.TB, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("client %s: write %q: %v", c.tag, text, err)
	}
}

// cluster owns everything a test starts.
type cluster struct {
	t        *testing.T
	dir      *directory.Memory
	handling handling

	mu       sync.Mutex
	gateways []*gatewayServer
	workers  []*workerRun
	clients  []*client
	tags     atomic.Int64
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dir: directory.NewMemory(), handling: handling{in: make(map[string]string)}}
	t.Cleanup(c.shutdown)
	return c
}

func (c *cluster) shutdown() {
	c.mu.Lock()
	clients, gateways, workers := c.clients, c.gateways, c.workers
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.ws.CloseNow()
		cl.mu.Lock()
		done := cl.done
		cl.mu.Unlock()
		if done != nil {
			<-done
		}
	}
	for _, g := range gateways {
		// Gateway.Close waits for its connections, whose close events go
		// to a worker that is still running.
		g.gw.Close(websocket.StatusGoingAway, "test over")
	}
	for _, w := range workers {
		if w.halt(); !w.returned {
			c.t.Error("worker Run did not return after its context ended")
		}
	}
	for _, g := range gateways {
		g.grpc.Stop()
		_ = g.http.Close()
		<-g.serveErr
		<-g.serveErr
	}
}

// startGateway starts a gateway with cfg on the cluster's directory.
func (c *cluster) startGateway(cfg gateway.Config) *gatewayServer {
	t := c.t
	t.Helper()
	gw, err := gateway.New(cfg, c.dir, nil)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	wsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	linkLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = wsLis.Close()
		t.Fatal(err)
	}
	g := &gatewayServer{
		gw: gw, wsAddr: wsLis.Addr().String(), linkAddr: linkLis.Addr().String(),
		http: &http.Server{Handler: gw}, grpc: grpc.NewServer(), serveErr: make(chan error, 2),
	}
	linkv1.RegisterLinkServiceServer(g.grpc, gw)
	go func() { g.serveErr <- g.http.Serve(wsLis) }()
	go func() { g.serveErr <- g.grpc.Serve(linkLis) }()
	c.mu.Lock()
	c.gateways = append(c.gateways, g)
	c.mu.Unlock()
	return g
}

// insecureDial is how the tests' workers reach gateways' link endpoints.
var insecureDial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}

// startWorker runs a worker linked to gws with a fresh recorder.
func (c *cluster) startWorker(gws ...*gatewayServer) *workerRun {
	return c.startWorkerConfig(worker.Config{}, gws...)
}

// startWorkerConfig is startWorker with cfg (its DialOptions are set here).
func (c *cluster) startWorkerConfig(cfg worker.Config, gws ...*gatewayServer) *workerRun {
	cfg.DialOptions = insecureDial
	w := worker.New(cfg, c.dir, nil)
	infos := make([]*registerv1.Gateway, 0, len(gws))
	for _, g := range gws {
		infos = append(infos, g.info())
	}
	w.SetGateways(infos)
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	name := "w" + strconv.Itoa(len(c.workers)+1)
	r := &workerRun{w: w, rec: newRecorder(name, w.API(), &c.handling), cancel: cancel, done: make(chan error, 1)}
	c.workers = append(c.workers, r)
	c.mu.Unlock()
	go func() { r.done <- w.Run(ctx, r.rec) }()
	c.t.Cleanup(func() { r.rec.checkNoProblems(c.t) })
	return r
}

// dialOptions tunes dial.
type dialOptions struct {
	path   string      // default "/"
	query  string      // added after tag=...
	header http.Header // extra handshake headers
	noRead bool        // do not start the background reader
}

// dial connects a client to g. Its handshake query carries a unique tag, so
// that the test can find its client_id in a recorder (idByTag).
func (c *cluster) dial(g *gatewayServer, o dialOptions) *client {
	t := c.t
	t.Helper()
	cl := &client{tag: "c" + strconv.FormatInt(c.tags.Add(1), 10)}
	path := o.path
	if path == "" {
		path = "/"
	}
	u := "ws://" + g.wsAddr + path + "?tag=" + cl.tag
	if o.query != "" {
		u += "&" + o.query
	}
	var local atomic.Value
	transport := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			local.Store(conn.LocalAddr().String())
		}
		return conn, err
	}}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: o.header, HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	cl.ws = ws
	cl.local, _ = local.Load().(string)
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	if !o.noRead {
		cl.read()
	}
	return cl
}

// idOf waits until one of ws has seen the client connect and returns its
// client_id and the worker that saw it.
func (c *cluster) idOf(cl *client, ws ...*workerRun) (string, *workerRun) {
	t := c.t
	t.Helper()
	var id string
	var at *workerRun
	eventually(t, "the connect of client "+cl.tag, func() bool {
		for _, w := range ws {
			if id = w.rec.idByTag(cl.tag); id != "" {
				at = w
				return true
			}
		}
		return false
	})
	return id, at
}

// ctx returns a context bounded by waitFor for API calls.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}
