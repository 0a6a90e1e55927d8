package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
	"github.com/gatewire/gatewire/internal/worker"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// fuzzReadLimit is the fuzzed gateway's -read-limit: small, so that inputs
// fall on both sides of it.
const fuzzReadLimit = 4 << 10

// fuzzWait bounds each wait of one fuzz input: a frame's trip to the
// worker, its echo's trip back, the close of an oversized frame.
const fuzzWait = 10 * time.Second

// FuzzGatewayFrames sends arbitrary frames, text or binary, from a real
// WebSocket client through a gateway to a worker. A frame within the read
// limit must reach the worker byte for byte with its type, and the worker's
// echo must reach the client byte for byte: the connection is never wedged.
// A larger frame must close the connection with 1009 without reaching the
// worker. One gateway, worker and (until a frame closes it) connection serve
// every input. The message rate limit is off here (it refuses frames by
// count, not content; limits_test.go covers it).
func FuzzGatewayFrames(f *testing.F) {
	for _, s := range []string{
		"", " ", "hello", "echo:x", "\x00", "\x00\x00\xff", "\xff\xfe\xfd", "\xed\xa0\x80", "\xc0\xaf",
		`{"type":"init","client_id":"6d6dd722956562950000000000000001"}`,
		`{"type":"bind","client_id":"6d6dd722956562950000000000000001","frontId":"85","token":"eyJhbGciOiJIUzI1NiIs..."}`,
		`{"type":"say","frontId":"85","toId":"86","data":"hi <b>'you'</b>\nbye","cmid":"c-17"}`,
		`{"type":"history","toId":"86","limit":10,"before":42}`, `{"type":"read","toId":"86","upTo":42}`,
		`{"type":"profile","toId":"86"}`, `{"type":"bind","frontId":"8` + "\xff" + `5"}`,
		strings.Repeat("[", fuzzReadLimit), strings.Repeat("[", fuzzReadLimit+1), strings.Repeat("a", fuzzReadLimit-1),
		strings.Repeat("\x00", 200), strings.Repeat("[", 100_000),
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	rig := startFuzzRig(f)
	f.Fuzz(func(t *testing.T, data []byte, binary bool) {
		rig.check(t, data, binary)
	})
}

// fuzzRig is a gateway and a worker running an echoHandler, with the
// client currently connected to the gateway.
type fuzzRig struct {
	g      *linktest.Gateway
	h      *echoHandler
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan error // the worker's Run

	cl *fuzzClient // nil when the last one was closed
	id string      // its client_id
}

// startFuzzRig starts the rig; everything stops when tb ends.
func startFuzzRig(tb testing.TB) *fuzzRig {
	tb.Helper()
	g := linktest.ServeGateway(tb, gateway.Config{ReadLimit: fuzzReadLimit, MessageRate: -1}, directory.NewMemory())

	w := worker.New(worker.Config{DialOptions: linktest.InsecureDial}, directory.NewMemory(), nil)
	w.SetGateways([]*registerv1.Gateway{g.Info()})
	h := newEchoHandler(w.API())
	ctx, cancel := context.WithCancel(context.Background())
	r := &fuzzRig{g: g, h: h, w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx, h) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

// stop stops the client, the gateway, the worker and the servers, in the
// order of a linktest.Cluster's.
func (r *fuzzRig) stop(tb testing.TB) {
	if r.cl != nil {
		r.cl.closeNow()
	}
	r.g.GW.Close(websocket.StatusGoingAway, "fuzzing over")
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(linktest.WaitFor):
		tb.Error("worker Run did not return after its context ended")
	}
	r.g.Stop()
	if p := r.h.problems(); len(p) != 0 {
		tb.Errorf("echo handler: %v", p)
	}
}

// conn returns the rig's connection, dialing a new one when there is none.
func (r *fuzzRig) conn(t *testing.T) (*fuzzClient, string) {
	t.Helper()
	if r.cl != nil {
		return r.cl, r.id
	}
	cl, err := dialFuzzClient(r.g.WSAddr)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := r.h.next(r.h.connects, fuzzWait)
	if !ok {
		cl.closeNow()
		t.Fatalf("no OnConnect within %v of the handshake", fuzzWait)
	}
	r.cl, r.id = cl, id.id
	return r.cl, r.id
}

// check sends one frame and checks its fate.
func (r *fuzzRig) check(t *testing.T, data []byte, binary bool) {
	cl, id := r.conn(t)
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	werr := cl.ws.Write(ctx, typ, data)
	cancel()

	if len(data) > fuzzReadLimit {
		// Refused: closed with 1009, the frame never reaches the worker.
		r.cl = nil
		defer cl.closeNow()
		in, ok := cl.next(fuzzWait)
		switch {
		case !ok:
			t.Fatalf("a %d-byte frame over the %d-byte limit (write: %v): the connection is still open after %v", len(data), fuzzReadLimit, werr, fuzzWait)
		case in.err == nil:
			t.Fatalf("a %d-byte frame over the limit was answered with %v %q, want a 1009 close", len(data), in.typ, in.data)
		case websocket.CloseStatus(in.err) != websocket.StatusMessageTooBig:
			t.Fatalf("a %d-byte frame over the limit ended the connection with %v, want close 1009", len(data), in.err)
		}
		if _, ok := r.h.next(r.h.closes, fuzzWait); !ok {
			t.Fatalf("no OnClose within %v of a 1009 close", fuzzWait)
		}
		if m, ok := r.h.next(r.h.msgs, 0); ok {
			t.Fatalf("a frame over the limit reached the worker: %d bytes", len(m.msg.Data))
		}
		if n := r.g.GW.ConnCount(); n != 0 {
			t.Fatalf("ConnCount = %d after the only connection was closed", n)
		}
		return
	}
	if werr != nil {
		r.cl = nil
		cl.closeNow()
		t.Fatalf("write of a %d-byte %v frame: %v", len(data), typ, werr)
	}
	got, ok := r.h.next(r.h.msgs, fuzzWait)
	if !ok {
		t.Fatalf("a %d-byte %v frame %q did not reach the worker within %v: the connection is wedged", len(data), typ, data, fuzzWait)
	}
	if got.id != id || got.msg.Binary != binary || !bytes.Equal(got.msg.Data, data) {
		t.Fatalf("sent %v frame %q as %s; the worker got binary=%v %q from %s", typ, data, id, got.msg.Binary, got.msg.Data, got.id)
	}
	in, ok := cl.next(fuzzWait)
	switch {
	case !ok:
		t.Fatalf("the echo of %q did not reach the client within %v: the connection is wedged", data, fuzzWait)
	case in.err != nil:
		r.cl = nil
		cl.closeNow()
		t.Fatalf("the connection ended after a %d-byte %v frame %q: %v", len(data), typ, data, in.err)
	case in.typ != typ || !bytes.Equal(in.data, data):
		t.Fatalf("sent %v frame %q; the echo came back as %v %q", typ, data, in.typ, in.data)
	}
}

// echoHandler is a worker.Handler that sends every message back to its
// client as it came and hands the test each event on a channel.
type echoHandler struct {
	api                    worker.API
	connects, msgs, closes chan echoEvent
	mu                     sync.Mutex
	problemsSeen           []string
}

// echoEvent is one handler call.
type echoEvent struct {
	id  string
	msg worker.Message
}

func newEchoHandler(api worker.API) *echoHandler {
	return &echoHandler{api: api, connects: make(chan echoEvent, 16), msgs: make(chan echoEvent, 16), closes: make(chan echoEvent, 16)}
}

// hand passes e on without ever blocking the worker.
func (h *echoHandler) hand(ch chan echoEvent, e echoEvent) {
	select {
	case ch <- e:
	default:
		h.problem(fmt.Sprintf("event of %s dropped: the test is not reading", e.id))
	}
}

// next waits up to timeout for an event on ch.
func (h *echoHandler) next(ch chan echoEvent, timeout time.Duration) (echoEvent, bool) {
	if timeout <= 0 {
		select {
		case e := <-ch:
			return e, true
		default:
			return echoEvent{}, false
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case e := <-ch:
		return e, true
	case <-timer.C:
		return echoEvent{}, false
	}
}

func (h *echoHandler) problem(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problemsSeen = append(h.problemsSeen, s)
}

func (h *echoHandler) problems() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.problemsSeen
}

func (h *echoHandler) OnConnect(_ context.Context, c *worker.Client) {
	h.hand(h.connects, echoEvent{id: c.ID})
}

func (h *echoHandler) OnWebSocketConnect(context.Context, *worker.Client, *worker.Request) {}

func (h *echoHandler) OnMessage(ctx context.Context, c *worker.Client, m worker.Message) {
	data := bytes.Clone(m.Data)
	if data == nil {
		data = []byte{}
	}
	h.hand(h.msgs, echoEvent{id: c.ID, msg: worker.Message{Data: data, Binary: m.Binary}})
	if err := h.api.SendToClient(ctx, c.ID, data, m.Binary); err != nil {
		h.problem(fmt.Sprintf("echo to %s: %v", c.ID, err))
	}
}

func (h *echoHandler) OnClose(_ context.Context, c *worker.Client) {
	h.hand(h.closes, echoEvent{id: c.ID})
}

// fuzzClient is a WebSocket client whose reader hands every frame (and the
// error that ends the connection) to the test, answering pings meanwhile.
type fuzzClient struct {
	ws   *websocket.Conn
	in   chan wsIn
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// wsIn is one result of reading.
type wsIn struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

func dialFuzzClient(addr string) (*fuzzClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &fuzzClient{ws: ws, in: make(chan wsIn, 4), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			typ, data, err := ws.Read(context.Background())
			select {
			case c.in <- wsIn{typ: typ, data: data, err: err}:
			case <-c.quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

// next waits up to timeout for what the reader got next.
func (c *fuzzClient) next(timeout time.Duration) (wsIn, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case in := <-c.in:
		return in, true
	case <-timer.C:
		return wsIn{}, false
	}
}

// closeNow drops the connection and waits for the reader.
func (c *fuzzClient) closeNow() {
	c.once.Do(func() {
		_ = c.ws.CloseNow()
		close(c.quit)
		<-c.done
	})
}
