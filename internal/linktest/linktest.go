// Package linktest is the harness of the gateway and worker packages'
// tests: it wires real gateways and workers together over loopback
// sockets inside the test's process, runs each worker with a Recorder
// (a Handler that records every call) and dials coder/websocket clients
// that record every frame they read. Everything a Cluster starts is
// stopped by the cleanup New registers, in an order that needs no
// timeouts: clients, gateways, workers, servers.
package linktest

import (
	"context"
	"encoding/json"
	"fmt"
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

// WaitFor bounds every wait of the harness; it is generous because the
// tests assert what happens, not how fast.
const WaitFor = 20 * time.Second

// Eventually polls cond until it holds, failing the test after WaitFor.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Ctx returns a context bounded by WaitFor for API calls.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	t.Cleanup(cancel)
	return ctx
}

// EventKind names a Handler method.
type EventKind string

const (
	EvConnect   EventKind = "connect"
	EvWebSocket EventKind = "websocket"
	EvMessage   EventKind = "message"
	EvClose     EventKind = "close"
)

// Event is one Handler call as the Recorder saw it.
type Event struct {
	Kind   EventKind
	Client worker.Client
	Req    *worker.Request // EvWebSocket only
	Msg    worker.Message  // EvMessage only
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

// Recorder is a Handler that records every call per client_id, in order.
// A message "echo:<text>" is answered with <text> through the API (same
// frame type), "bind:<uid>" binds the client to uid and "session:<json>"
// patches its session; a message held with Hold blocks its call until
// released. It notes when two calls for one client overlap, on this
// worker or another of the cluster, which the Handler contract forbids,
// and fails the test at its end if they did or an API call failed.
type Recorder struct {
	name   string
	api    worker.API
	shared *handling

	mu       sync.Mutex
	events   map[string][]Event
	holds    map[string]chan struct{} // message data → released when closed
	problems []string
}

func newRecorder(name string, api worker.API, shared *handling) *Recorder {
	return &Recorder{name: name, api: api, shared: shared,
		events: make(map[string][]Event), holds: make(map[string]chan struct{})}
}

func (r *Recorder) begin(e Event) {
	call := r.name + " " + string(e.Kind) + " " + string(e.Msg.Data)
	if running := r.shared.enter(e.Client.ID, call); running != "" {
		r.problem("overlapping handler calls for " + e.Client.ID + ": " + call + " began while " + running + " ran")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[e.Client.ID] = append(r.events[e.Client.ID], e)
}

func (r *Recorder) end(id string) { r.shared.leave(id) }

func (r *Recorder) problem(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, s)
}

// Hold makes the call for a message with data text block until release is
// called; the test's cleanup releases it too.
func (r *Recorder) Hold(t testing.TB, text string) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.holds[text] = ch
	r.mu.Unlock()
	release = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(release)
	return release
}

func (r *Recorder) OnConnect(_ context.Context, c *worker.Client) {
	r.begin(Event{Kind: EvConnect, Client: *c})
	r.end(c.ID)
}

func (r *Recorder) OnWebSocketConnect(_ context.Context, c *worker.Client, req *worker.Request) {
	r.begin(Event{Kind: EvWebSocket, Client: *c, Req: req})
	r.end(c.ID)
}

func (r *Recorder) OnMessage(ctx context.Context, c *worker.Client, m worker.Message) {
	r.begin(Event{Kind: EvMessage, Client: *c, Msg: worker.Message{Data: slices.Clone(m.Data), Binary: m.Binary}})
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

func (r *Recorder) OnClose(_ context.Context, c *worker.Client) {
	r.begin(Event{Kind: EvClose, Client: *c})
	r.end(c.ID)
}

// EventsOf returns a copy of the events recorded for a client.
func (r *Recorder) EventsOf(id string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[id])
}

// MessagesOf returns the data of the messages recorded for a client.
func (r *Recorder) MessagesOf(id string) []string {
	var out []string
	for _, e := range r.EventsOf(id) {
		if e.Kind == EvMessage {
			out = append(out, string(e.Msg.Data))
		}
	}
	return out
}

// Has reports whether a call of kind was recorded for a client.
func (r *Recorder) Has(id string, kind EventKind) bool {
	for _, e := range r.EventsOf(id) {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// IDByTag returns the client_id whose handshake query carried tag=tag.
func (r *Recorder) IDByTag(tag string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, evs := range r.events {
		for _, e := range evs {
			if e.Kind != EvWebSocket {
				continue
			}
			if q, err := url.ParseQuery(e.Req.Query); err == nil && q.Get("tag") == tag {
				return id
			}
		}
	}
	return ""
}

// CheckNoProblems fails the test when the handler saw a contract breach or
// an API call failed, and forgets what it reported.
func (r *Recorder) CheckNoProblems(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
	r.problems = nil
}

// Gateway is a gateway served on two loopback listeners.
type Gateway struct {
	GW       *gateway.Gateway
	WSAddr   string
	LinkAddr string

	http     *http.Server
	grpc     *grpc.Server
	serveErr chan error // one value per Serve goroutine
}

// Info is the register's view of the gateway.
func (g *Gateway) Info() *registerv1.Gateway {
	return &registerv1.Gateway{Id: g.GW.ID(), LinkAddress: g.LinkAddr, PublicAddress: g.WSAddr}
}

// ServeGateway starts a gateway with cfg on dir, serving WebSockets and
// links on loopback ports (its gRPC server made with opts), outside any
// Cluster: the caller stops it with Stop.
func ServeGateway(tb testing.TB, cfg gateway.Config, dir directory.Directory, opts ...grpc.ServerOption) *Gateway {
	tb.Helper()
	gw, err := gateway.New(cfg, dir, nil)
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	wsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	linkLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = wsLis.Close()
		tb.Fatal(err)
	}
	g := &Gateway{
		GW: gw, WSAddr: wsLis.Addr().String(), LinkAddr: linkLis.Addr().String(),
		http: &http.Server{Handler: gw}, grpc: grpc.NewServer(opts...), serveErr: make(chan error, 2),
	}
	linkv1.RegisterLinkServiceServer(g.grpc, gw)
	go func() { g.serveErr <- g.http.Serve(wsLis) }()
	go func() { g.serveErr <- g.grpc.Serve(linkLis) }()
	return g
}

// StopLinks stops the gateway's gRPC server at once: every worker's link
// to it breaks, and the gateway cannot report anything on them.
func (g *Gateway) StopLinks() { g.grpc.Stop() }

// Stop stops the gateway's servers and waits for them; a Cluster's
// cleanup does it for the gateways it started, after closing them.
func (g *Gateway) Stop() {
	g.StopLinks()
	_ = g.http.Close()
	<-g.serveErr
	<-g.serveErr
}

// Worker is a worker running a Recorder.
type Worker struct {
	W      *worker.Worker
	Rec    *Recorder
	cancel context.CancelFunc
	done   chan error // Run's result

	once     sync.Once
	returned bool  // Run returned after cancel
	err      error // what Run returned
}

// Halt cancels Run and waits up to WaitFor for it to return.
func (r *Worker) Halt() {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
			r.returned = true
		case <-time.After(WaitFor):
		}
	})
}

// Stop halts the worker, fails the test when Run does not return, and
// returns Run's error.
func (r *Worker) Stop(t testing.TB) error {
	t.Helper()
	r.Halt()
	if !r.returned {
		t.Fatal("worker Run did not return after its context ended")
	}
	return r.err
}

// Frame is one frame a client received.
type Frame struct {
	Type websocket.MessageType
	Data string
}

// Client is a WebSocket client. A reading client reads in the background
// and keeps what it reads; a non-reading client never calls Read (so it
// answers no ping and no close) until Read is called.
type Client struct {
	WS    *websocket.Conn
	Tag   string
	Local string // the client's local host:port

	mu      sync.Mutex
	frames  []Frame
	readErr error
	done    chan struct{} // closed when the reader stopped; nil before Read
}

// Read starts the background reader.
func (c *Client) Read() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			typ, data, err := c.WS.Read(context.Background())
			c.mu.Lock()
			if err != nil {
				c.readErr = err
				c.mu.Unlock()
				return
			}
			c.frames = append(c.frames, Frame{Type: typ, Data: string(data)})
			c.mu.Unlock()
		}
	}()
}

// Messages returns the frames the client has read so far.
func (c *Client) Messages() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// WaitMessages waits until the client has read at least n frames and
// returns all it has read.
func (c *Client) WaitMessages(t testing.TB, n int) []Frame {
	t.Helper()
	Eventually(t, strconv.Itoa(n)+" frames at client "+c.Tag, func() bool { return len(c.Messages()) >= n })
	return c.Messages()
}

// Closed reports whether the reader has stopped.
func (c *Client) Closed() bool {
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

// WaitClosed waits for the reader to stop and returns the error that
// stopped it.
func (c *Client) WaitClosed(t testing.TB) error {
	t.Helper()
	Eventually(t, "client "+c.Tag+" to be closed", c.Closed)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// Send writes a text frame, failing the test if it cannot.
func (c *Client) Send(t testing.TB, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	defer cancel()
	if err := c.WS.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("client %s: write %q: %v", c.Tag, text, err)
	}
}

// Cluster owns everything a test starts.
type Cluster struct {
	T   *testing.T
	Dir *directory.Memory

	handling handling
	mu       sync.Mutex
	gateways []*Gateway
	workers  []*Worker
	clients  []*Client
	tags     atomic.Int64
}

// New returns an empty cluster on a memory directory; the test's cleanup
// stops all it starts.
func New(t *testing.T) *Cluster {
	c := &Cluster{T: t, Dir: directory.NewMemory(), handling: handling{in: make(map[string]string)}}
	t.Cleanup(c.shutdown)
	return c
}

func (c *Cluster) shutdown() {
	c.mu.Lock()
	clients, gateways, workers := c.clients, c.gateways, c.workers
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.WS.CloseNow()
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
		g.GW.Close(websocket.StatusGoingAway, "test over")
	}
	for _, w := range workers {
		if w.Halt(); !w.returned {
			c.T.Error("worker Run did not return after its context ended")
		}
	}
	for _, g := range gateways {
		g.Stop()
	}
}

// StartGateway starts a gateway with cfg on the cluster's directory.
func (c *Cluster) StartGateway(cfg gateway.Config) *Gateway {
	c.T.Helper()
	return c.StartGatewayOn(cfg, c.Dir)
}

// StartGatewayOn starts a gateway with cfg on dir, which should pass the
// cluster's directory through, its gRPC server made with opts.
func (c *Cluster) StartGatewayOn(cfg gateway.Config, dir directory.Directory, opts ...grpc.ServerOption) *Gateway {
	c.T.Helper()
	g := ServeGateway(c.T, cfg, dir, opts...)
	c.mu.Lock()
	c.gateways = append(c.gateways, g)
	c.mu.Unlock()
	return g
}

// InsecureDial is how the tests' workers reach gateways' link endpoints.
var InsecureDial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}

// StartWorker runs a worker linked to gws with a fresh Recorder.
func (c *Cluster) StartWorker(gws ...*Gateway) *Worker {
	return c.StartWorkerConfig(worker.Config{}, gws...)
}

// StartWorkerConfig is StartWorker with cfg (its DialOptions are set here).
func (c *Cluster) StartWorkerConfig(cfg worker.Config, gws ...*Gateway) *Worker {
	cfg.DialOptions = InsecureDial
	w := worker.New(cfg, c.Dir, nil)
	infos := make([]*registerv1.Gateway, 0, len(gws))
	for _, g := range gws {
		infos = append(infos, g.Info())
	}
	w.SetGateways(infos)
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	name := "w" + strconv.Itoa(len(c.workers)+1)
	r := &Worker{W: w, Rec: newRecorder(name, w.API(), &c.handling), cancel: cancel, done: make(chan error, 1)}
	c.workers = append(c.workers, r)
	c.mu.Unlock()
	go func() { r.done <- w.Run(ctx, r.Rec) }()
	c.T.Cleanup(func() { r.Rec.CheckNoProblems(c.T) })
	return r
}

// DialOptions tunes DialWith.
type DialOptions struct {
	Path   string      // default "/"
	Query  string      // added after tag=...
	Header http.Header // extra handshake headers
	NoRead bool        // do not start the background reader
}

// Dial connects a reading client to g, failing the test if it cannot. Its
// handshake query carries a unique tag, so that the test can find its
// client_id in a Recorder (IDByTag).
func (c *Cluster) Dial(g *Gateway) *Client {
	c.T.Helper()
	return c.DialWith(g, DialOptions{})
}

// DialWith is Dial with o.
func (c *Cluster) DialWith(g *Gateway, o DialOptions) *Client {
	c.T.Helper()
	cl, err := c.TryDial(g, o)
	if err != nil {
		c.T.Fatal(err)
	}
	return cl
}

// TryDial connects a client to g as DialWith does and returns the
// handshake's error (with the HTTP status of a refusal) instead of
// failing the test.
func (c *Cluster) TryDial(g *Gateway, o DialOptions) (*Client, error) {
	cl := &Client{Tag: "c" + strconv.FormatInt(c.tags.Add(1), 10)}
	path := o.Path
	if path == "" {
		path = "/"
	}
	u := "ws://" + g.WSAddr + path + "?tag=" + cl.Tag
	if o.Query != "" {
		u += "&" + o.Query
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
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: o.Header, HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	cl.WS = ws
	cl.Local, _ = local.Load().(string)
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	if !o.NoRead {
		cl.Read()
	}
	return cl, nil
}

// DialMany connects n reading clients to g and returns them with their
// client_ids, as w saw them connect.
func (c *Cluster) DialMany(g *Gateway, w *Worker, n int) ([]*Client, []string) {
	c.T.Helper()
	clients := make([]*Client, n)
	ids := make([]string, n)
	for i := range clients {
		clients[i] = c.Dial(g)
	}
	for i, cl := range clients {
		ids[i], _ = c.IDOf(cl, w)
	}
	return clients, ids
}

// IDOf waits until one of ws has seen the client connect and returns its
// client_id and the worker that saw it.
func (c *Cluster) IDOf(cl *Client, ws ...*Worker) (string, *Worker) {
	c.T.Helper()
	var id string
	var at *Worker
	Eventually(c.T, "the connect of client "+cl.Tag, func() bool {
		for _, w := range ws {
			if id = w.Rec.IDByTag(cl.Tag); id != "" {
				at = w
				return true
			}
		}
		return false
	})
	return id, at
}
