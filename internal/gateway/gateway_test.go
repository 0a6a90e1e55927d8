package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
	"github.com/gatewire/gatewire/internal/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestClientIDs checks that every connection gets its own client_id, with
// its gateway's id as prefix.
func TestClientIDs(t *testing.T) {
	c := linktest.New(t)
	g1, g2 := c.StartGateway(gateway.Config{}), c.StartGateway(gateway.Config{})
	w := c.StartWorker(g1, g2)

	seen := map[string]bool{}
	for _, g := range []*linktest.Gateway{g1, g2, g1, g2, g1} {
		id, _ := c.IDOf(c.Dial(g), w)
		if gw, err := clientid.GatewayOf(id); err != nil || gw != g.GW.ID() {
			t.Errorf("client_id %q: gateway %q, %v; want %q", id, gw, err, g.GW.ID())
		}
		if seen[id] {
			t.Errorf("client_id %q issued twice", id)
		}
		seen[id] = true
	}
	if g1.GW.ID() == g2.GW.ID() {
		t.Errorf("two gateways share the id %q", g1.GW.ID())
	}
	if n := g1.GW.ConnCount(); n != 3 {
		t.Errorf("ConnCount = %d, want 3", n)
	}
}

// TestReadLimit checks that a frame of ReadLimit bytes passes and a larger
// one closes the connection with 1009.
func TestReadLimit(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{ReadLimit: 1024})
	w := c.StartWorker(g)

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	atLimit := "echo:" + strings.Repeat("a", 1024-len("echo:"))
	cl.Send(t, atLimit)
	if got := cl.WaitMessages(t, 1); got[0].Data != atLimit[len("echo:"):] {
		t.Fatalf("echo of a frame at the limit: got %d bytes", len(got[0].Data))
	}

	cl.Send(t, strings.Repeat("b", 1025))
	err := cl.WaitClosed(t)
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Errorf("close status = %v (%v), want %v", code, err, websocket.StatusMessageTooBig)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	if got := w.Rec.MessagesOf(id); len(got) != 1 {
		t.Errorf("the worker got %d messages, want only the one at the limit", len(got))
	}
}

// TestSlowClientClosed checks that a client that does not read is closed
// once its send queue overflows, while sends to another client of the same
// gateway all go through.
func TestSlowClientClosed(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{SendQueue: 4})
	w := c.StartWorker(g)
	api := w.W.API()

	slow, fast := c.DialWith(g, linktest.DialOptions{NoRead: true}), c.Dial(g)
	idSlow, _ := c.IDOf(slow, w)
	idFast, _ := c.IDOf(fast, w)

	// Frames big enough to fill the socket buffers soon; what the slow
	// client is owed then grows past its send queue.
	big := make([]byte, 128<<10)
	sent := 0
	for closed := false; !closed; sent++ {
		if sent == 2000 {
			t.Fatalf("the slow client was not closed after %d frames of %d bytes", sent, len(big))
		}
		switch err := api.SendToClient(linktest.Ctx(t), idSlow, big, true); {
		case errors.Is(err, worker.ErrNotFound):
			closed = true
		case err != nil:
			t.Fatalf("send %d to the slow client: %v", sent, err)
		}
		if err := api.SendToClient(linktest.Ctx(t), idFast, fmt.Appendf(nil, "f-%d", sent), false); err != nil {
			t.Fatalf("send %d to the fast client: %v", sent, err)
		}
	}
	got := fast.WaitMessages(t, sent)
	for i, m := range got {
		if want := fmt.Sprintf("f-%d", i); m.Data != want {
			t.Fatalf("fast client frame %d = %q, want %q", i, m.Data, want)
		}
	}
	linktest.Eventually(t, "OnClose of the slow client", func() bool { return w.Rec.Has(idSlow, linktest.EvClose) })
	if w.Rec.Has(idFast, linktest.EvClose) || fast.Closed() {
		t.Fatal("the fast client was closed too")
	}

	// The slow client finds its connection closed once it reads what
	// reached it. (Config.SendQueue documents a 1008 close; the gateway
	// drops the connection without a close frame, so no status is checked.)
	slow.WS.SetReadLimit(-1)
	slow.Read()
	if err := slow.WaitClosed(t); err == nil {
		t.Error("the slow client's read ended without an error")
	}

	fast.Send(t, "echo:still here")
	if got := fast.WaitMessages(t, sent+1); got[sent].Data != "still here" {
		t.Errorf("fast client got %q, want still here", got[sent].Data)
	}
}

// TestWriteTimeout checks that a client whose socket stops taking frames is
// cut after WriteTimeout even while its send queue still has room.
func TestWriteTimeout(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{SendQueue: 100000, SendQueueBytes: 1 << 40, WriteTimeout: 100 * time.Millisecond})
	w := c.StartWorker(g)
	api := w.W.API()

	stuck := c.DialWith(g, linktest.DialOptions{NoRead: true})
	id, _ := c.IDOf(stuck, w)
	// Enough to fill the socket buffers many times over; the queue never
	// overflows, so only the write timeout can close the client.
	big := make([]byte, 256<<10)
	for sent := 0; !w.Rec.Has(id, linktest.EvClose); sent++ {
		if sent == 4000 {
			t.Fatalf("the stuck client was not closed after %d frames of %d bytes", sent, len(big))
		}
		err := api.SendToClient(linktest.Ctx(t), id, big, true)
		if errors.Is(err, worker.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("send %d: %v", sent, err)
		}
		if sent >= 200 {
			time.Sleep(10 * time.Millisecond) // the writer is blocked by now
		}
	}
	linktest.Eventually(t, "OnClose of the stuck client", func() bool { return w.Rec.Has(id, linktest.EvClose) })
}

// TestPing checks that a client that does not answer pings is closed while
// a reading client stays open.
func TestPing(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{PingInterval: 50 * time.Millisecond, PingMisses: 2})
	w := c.StartWorker(g)

	reader := c.Dial(g)
	idReader, _ := c.IDOf(reader, w)
	// coder/websocket answers pings only while reading: these two never
	// read. Each is closed after two unanswered pings, so by the time the
	// second is, the reading client has been pinged several times.
	for range 2 {
		mute := c.DialWith(g, linktest.DialOptions{NoRead: true})
		idMute, _ := c.IDOf(mute, w)
		linktest.Eventually(t, "the mute client to be closed", func() bool { return w.Rec.Has(idMute, linktest.EvClose) })
	}
	if reader.Closed() || w.Rec.Has(idReader, linktest.EvClose) {
		t.Fatal("the reading client was closed")
	}
	reader.Send(t, "echo:alive")
	if got := reader.WaitMessages(t, 1); got[0].Data != "alive" {
		t.Errorf("reading client got %v, want [alive]", got)
	}
	if n := g.GW.ConnCount(); n != 1 {
		t.Errorf("ConnCount = %d, want 1", n)
	}
}

// TestCloseCommand checks that closing a client with data delivers the
// data, then closes with 1000.
func TestCloseCommand(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if err := api.SendToClient(linktest.Ctx(t), id, []byte("first"), false); err != nil {
		t.Fatal(err)
	}
	if err := api.CloseClient(linktest.Ctx(t), id, []byte("bye")); err != nil {
		t.Fatalf("CloseClient: %v", err)
	}
	err := cl.WaitClosed(t)
	if got, want := cl.Messages(), []linktest.Frame{{Type: websocket.MessageText, Data: "first"}, {Type: websocket.MessageText, Data: "bye"}}; !slices.Equal(got, want) {
		t.Errorf("client got %v, want %v", got, want)
	}
	if code := websocket.CloseStatus(err); code != websocket.StatusNormalClosure {
		t.Errorf("close status = %v (%v), want 1000", code, err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	if err := api.CloseClient(linktest.Ctx(t), id, nil); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("CloseClient of a closed client = %v, want ErrNotFound", err)
	}
}

// TestGatewayClose checks that Close closes every client with the given
// status, refuses new clients and can be called again.
func TestGatewayClose(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)

	clients := []*linktest.Client{c.Dial(g), c.Dial(g), c.Dial(g)}
	ids := make([]string, len(clients))
	for i, cl := range clients {
		ids[i], _ = c.IDOf(cl, w)
	}
	closeGateway := func() {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); g.GW.Close(websocket.StatusServiceRestart, "restart") }()
		select {
		case <-done:
		case <-time.After(linktest.WaitFor):
			t.Fatal("Gateway.Close did not return")
		}
	}
	closeGateway()
	for _, cl := range clients {
		err := cl.WaitClosed(t)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusServiceRestart || ce.Reason != "restart" {
			t.Errorf("client %s: closed with %v, want 1012 restart", cl.Tag, err)
		}
	}
	if n := g.GW.ConnCount(); n != 0 {
		t.Errorf("ConnCount after Close = %d, want 0", n)
	}
	for _, id := range ids {
		linktest.Eventually(t, "OnClose of "+id, func() bool { return w.Rec.Has(id, linktest.EvClose) })
	}
	closeGateway() // idempotent
	if _, err := c.TryDial(g, linktest.DialOptions{}); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("dial after Close: %v, want HTTP 503", err)
	}
}

// TestCloseDuringHandshakes checks that Close returns, and leaves no client
// open, while clients keep connecting.
// A connection whose handshake passed the "closed" check before Close but
// registers after Close walked the connections must be closed too.
func TestCloseDuringHandshakes(t *testing.T) {
	for round := range 5 {
		c := linktest.New(t)
		g := c.StartGateway(gateway.Config{})
		c.StartWorker(g)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					cl, err := c.TryDial(g, linktest.DialOptions{})
					if err != nil {
						return // refused: the gateway is closed
					}
					cl.Read()
				}
			})
		}
		linktest.Eventually(t, "clients to connect", func() bool { return g.GW.ConnCount() >= 8 })
		done := make(chan struct{})
		go func() { defer close(done); g.GW.Close(websocket.StatusServiceRestart, "restart") }()
		select {
		case <-done:
		case <-time.After(linktest.WaitFor):
			t.Errorf("round %d: Gateway.Close did not return; %d connections still open", round, g.GW.ConnCount())
		}
		close(stop)
		wg.Wait()
		if t.Failed() {
			return // the cleanup closes the clients, which lets Close return
		}
	}
}

// TestNoWorker checks that a client is closed with 1013 when no worker is
// linked within WorkerWait, and that clients are served once one links.
func TestNoWorker(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{WorkerWait: 100 * time.Millisecond})

	cl := c.Dial(g)
	err := cl.WaitClosed(t)
	if code := websocket.CloseStatus(err); code != websocket.StatusTryAgainLater {
		t.Errorf("close status = %v (%v), want %v", code, err, websocket.StatusTryAgainLater)
	}
	linktest.Eventually(t, "the gateway to forget the client", func() bool { return g.GW.ConnCount() == 0 })

	w := c.StartWorker(g)
	cl = c.Dial(g)
	c.IDOf(cl, w)
	cl.Send(t, "echo:served")
	if got := cl.WaitMessages(t, 1); got[0].Data != "served" {
		t.Errorf("client got %v, want [served]", got)
	}
}

// TestRepublish checks that Republish writes the entries of bound
// connections again after they were purged from the directory.
func TestRepublish(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	bound, unbound := c.Dial(g), c.Dial(g)
	idBound, _ := c.IDOf(bound, w)
	c.IDOf(unbound, w)
	if err := api.BindUID(linktest.Ctx(t), idBound, "rp"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{idBound: "rp"}
	purged, err := c.Dir.PurgeGateway(linktest.Ctx(t), g.GW.ID())
	if err != nil || !maps.Equal(purged, want) {
		t.Fatalf("PurgeGateway = %v, %v; want %v", purged, err, want)
	}
	if online, err := api.IsUIDOnline(linktest.Ctx(t), "rp"); err != nil || online {
		t.Fatalf("IsUIDOnline after purge = %v, %v; want false", online, err)
	}

	if err := g.GW.Republish(linktest.Ctx(t)); err != nil {
		t.Fatalf("Republish: %v", err)
	}
	entries, err := c.Dir.GatewayEntries(linktest.Ctx(t), g.GW.ID())
	if err != nil || !maps.Equal(entries, want) {
		t.Errorf("entries after Republish = %v, %v; want %v", entries, err, want)
	}
	if ids, err := api.ClientIDsByUID(linktest.Ctx(t), "rp"); err != nil || !slices.Equal(ids, []string{idBound}) {
		t.Errorf("ClientIDsByUID after Republish = %v, %v; want [%s]", ids, err, idBound)
	}
	// The republished entry is a real binding: it goes away with the
	// connection.
	_ = bound.WS.CloseNow()
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(idBound, linktest.EvClose) })
	if entries, err := c.Dir.GatewayEntries(linktest.Ctx(t), g.GW.ID()); err != nil || len(entries) != 0 {
		t.Errorf("entries after the client left = %v, %v; want none", entries, err)
	}
}

// TestLargeFanOut sends to more clients than one goroutine writes to (a
// Send listing every client_id, then a SendAll): every client gets each
// frame once and in order, and the results count every client.
func TestLargeFanOut(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()
	const n = 600 // over two of the gateway's fan-out shares
	clients, ids := c.DialMany(g, w, n)
	if got, err := api.SendToAll(linktest.Ctx(t), []byte("listed"), false, ids, nil); err != nil || got != n {
		t.Fatalf("SendToAll to %d listed clients: %d, %v", n, got, err)
	}
	if got, err := api.SendToAll(linktest.Ctx(t), []byte("all"), false, nil, nil); err != nil || got != n {
		t.Fatalf("SendToAll to every client: %d, %v; want %d", got, err, n)
	}
	for i, cl := range clients {
		got := cl.WaitMessages(t, 2)
		if len(got) != 2 || got[0].Data != "listed" || got[1].Data != "all" {
			t.Fatalf("client %d got %v, want listed then all", i, got)
		}
	}
}

// slowUnbinds passes a directory through, with each Unbind taking a while,
// and counts the most Unbinds under way at once.
type slowUnbinds struct {
	directory.Directory
	now, most atomic.Int64
}

func (s *slowUnbinds) Unbind(ctx context.Context, clientID, uid string) error {
	n := s.now.Add(1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	time.Sleep(5 * time.Millisecond)
	s.now.Add(-1)
	return s.Directory.Unbind(ctx, clientID, uid)
}

// TestCloseBurst: when many bound clients leave at once, the gateway cleans
// up after at most CloseConcurrency of them at a time, and after every one:
// each is unbound and each close reaches the worker.
func TestCloseBurst(t *testing.T) {
	c := linktest.New(t)
	dir := &slowUnbinds{Directory: c.Dir}
	g := c.StartGatewayOn(gateway.Config{}, dir)
	w := c.StartWorker(g)
	api := w.W.API()
	clients, ids := c.DialMany(g, w, 4*gateway.CloseConcurrency)
	for i, id := range ids {
		if err := api.BindUID(linktest.Ctx(t), id, "burst"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range clients {
		_ = cl.WS.CloseNow()
	}
	for _, id := range ids {
		linktest.Eventually(t, "OnClose of "+id, func() bool { return w.Rec.Has(id, linktest.EvClose) })
	}
	if entries, err := c.Dir.GatewayEntries(linktest.Ctx(t), g.GW.ID()); err != nil || len(entries) != 0 {
		t.Errorf("entries after every client left = %v, %v; want none", entries, err)
	}
	if most := dir.most.Load(); most > gateway.CloseConcurrency || most < 2 {
		t.Errorf("%d unbinds at once at most; want between 2 and %d", most, gateway.CloseConcurrency)
	}
}
