package worker_test

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/worker"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConnectEvents checks that a new client produces OnConnect then
// OnWebSocketConnect, carrying its client_id, address and handshake.
func TestConnectEvents(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)

	h := http.Header{}
	h.Set("X-Test", "hello")
	h.Add("Cookie", "session=abc123; theme=dark")
	cl := c.dial(g, dialOptions{path: "/chat/room", query: "a=1&b=two", header: h})
	id, _ := c.idOf(cl, w)

	if gw, err := clientid.GatewayOf(id); err != nil || gw != g.gw.ID() {
		t.Errorf("client_id %q: gateway %q, %v; want gateway %q", id, gw, err, g.gw.ID())
	}
	evs := w.rec.eventsOf(id)
	if len(evs) != 2 || evs[0].kind != evConnect || evs[1].kind != evWebSocket {
		t.Fatalf("events = %v, want [connect websocket]", kinds(evs))
	}
	for _, e := range evs {
		want := worker.Client{ID: id, RemoteAddress: cl.local, GatewayAddress: g.wsAddr}
		if !reflect.DeepEqual(e.client, want) {
			t.Errorf("%s: client = %+v, want %+v", e.kind, e.client, want)
		}
	}
	req := evs[1].req
	if req.Path != "/chat/room" {
		t.Errorf("path = %q, want /chat/room", req.Path)
	}
	if want := "tag=" + cl.tag + "&a=1&b=two"; req.Query != want {
		t.Errorf("query = %q, want %q", req.Query, want)
	}
	if got := req.Header.Get("X-Test"); got != "hello" {
		t.Errorf("header X-Test = %q, want hello", got)
	}
	cookies := map[string]string{}
	for _, ck := range req.Cookies() {
		cookies[ck.Name] = ck.Value
	}
	if cookies["session"] != "abc123" || cookies["theme"] != "dark" || len(cookies) != 2 {
		t.Errorf("cookies = %v, want session=abc123 theme=dark", cookies)
	}
}

func kinds(evs []event) []eventKind {
	out := make([]eventKind, len(evs))
	for i, e := range evs {
		out[i] = e.kind
	}
	return out
}

// TestMessageOrderPerClient checks that 200 rapid messages of one client
// reach the handler in order, one at a time, while other clients' messages
// interleave.
func TestMessageOrderPerClient(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)

	const n = 200
	clients := []*client{c.dial(g, dialOptions{}), c.dial(g, dialOptions{}), c.dial(g, dialOptions{})}
	ids := make([]string, len(clients))
	for i, cl := range clients {
		ids[i], _ = c.idOf(cl, w)
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for i := range n {
				if err := cl.ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "%s-%03d", cl.tag, i)); err != nil {
					t.Errorf("client %s: write %d: %v", cl.tag, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, cl := range clients {
		eventually(t, fmt.Sprintf("%d messages of client %s", n, cl.tag), func() bool { return len(w.rec.messagesOf(ids[i])) >= n })
		got := w.rec.messagesOf(ids[i])
		want := make([]string, n)
		for j := range want {
			want[j] = fmt.Sprintf("%s-%03d", cl.tag, j)
		}
		if !slices.Equal(got, want) {
			t.Errorf("client %s: messages out of order or duplicated:\n got %v\nwant %v", cl.tag, got, want)
		}
	}
}

// TestOnCloseCarriesUID checks that OnClose is the client's last event and
// carries the uid the connection had, and that events after a bind carry it
// too.
func TestOnCloseCarriesUID(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	if err := api.BindUID(testCtx(t), id, "u-close"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	cl.send(t, "after bind")
	eventually(t, "the message after the bind", func() bool { return len(w.rec.messagesOf(id)) == 1 })
	if err := cl.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client close: %v", err)
	}
	eventually(t, "OnClose", func() bool { return w.rec.has(id, evClose) })

	evs := w.rec.eventsOf(id)
	if got, want := kinds(evs), []eventKind{evConnect, evWebSocket, evMessage, evClose}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if uid := evs[2].client.UID; uid != "u-close" {
		t.Errorf("message after bind: UID = %q, want u-close", uid)
	}
	if uid := evs[3].client.UID; uid != "u-close" {
		t.Errorf("OnClose: UID = %q, want u-close", uid)
	}
}

// TestUIDOfflineAfterDisconnect checks that a uid stays online while one of
// its connections remains and goes offline when the last one leaves.
func TestUIDOfflineAfterDisconnect(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl1, cl2 := c.dial(g, dialOptions{}), c.dial(g, dialOptions{})
	id1, _ := c.idOf(cl1, w)
	id2, _ := c.idOf(cl2, w)
	for _, id := range []string{id1, id2} {
		if err := api.BindUID(testCtx(t), id, "leaver"); err != nil {
			t.Fatalf("BindUID %s: %v", id, err)
		}
	}
	if err := cl1.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close client 1: %v", err)
	}
	eventually(t, "OnClose of client 1", func() bool { return w.rec.has(id1, evClose) })
	eventually(t, "client 1 to leave the uid", func() bool {
		ids, err := api.ClientIDsByUID(testCtx(t), "leaver")
		return err == nil && slices.Equal(ids, []string{id2})
	})
	if online, err := api.IsUIDOnline(testCtx(t), "leaver"); err != nil || !online {
		t.Errorf("IsUIDOnline with one connection left = %v, %v; want true", online, err)
	}

	_ = cl2.ws.CloseNow() // dropped, not closed: the gateway must notice too
	eventually(t, "OnClose of client 2", func() bool { return w.rec.has(id2, evClose) })
	eventually(t, "the uid to go offline", func() bool {
		online, err := api.IsUIDOnline(testCtx(t), "leaver")
		return err == nil && !online
	})
	if uid, err := api.UIDByClientID(testCtx(t), id2); err != nil || uid != "" {
		t.Errorf("UIDByClientID of a closed client = %q, %v; want \"\"", uid, err)
	}
}

// TestSendToClient checks sends to a live client and the errors for
// unknown, closed and malformed client_ids.
func TestSendToClient(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	if err := api.SendToClient(testCtx(t), id, []byte("hello"), false); err != nil {
		t.Fatalf("SendToClient text: %v", err)
	}
	if err := api.SendToClient(testCtx(t), id, []byte{0, 1, 2}, true); err != nil {
		t.Fatalf("SendToClient binary: %v", err)
	}
	got := cl.waitMessages(t, 2)
	want := []wsMsg{{websocket.MessageText, "hello"}, {websocket.MessageBinary, "\x00\x01\x02"}}
	if !slices.Equal(got, want) {
		t.Errorf("client got %v, want %v", got, want)
	}

	for _, tc := range []struct {
		name, id string
		want     error
	}{
		{"never connected on a live gateway", clientid.Make(g.gw.ID(), 1<<40), worker.ErrNotFound},
		{"unknown gateway", clientid.Make(clientid.NewGatewayID(), 1), worker.ErrNotFound},
		{"too short", "not-a-client-id", worker.ErrInvalidArgument},
		{"not hex", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", worker.ErrInvalidArgument},
		{"empty", "", worker.ErrInvalidArgument},
	} {
		if err := api.SendToClient(testCtx(t), tc.id, []byte("x"), false); !errors.Is(err, tc.want) {
			t.Errorf("SendToClient(%s %q) = %v, want %v", tc.name, tc.id, err, tc.want)
		}
	}

	if err := cl.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v", err)
	}
	eventually(t, "OnClose", func() bool { return w.rec.has(id, evClose) })
	if err := api.SendToClient(testCtx(t), id, []byte("late"), false); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("SendToClient to a closed client = %v, want ErrNotFound", err)
	}
}

// TestBindUIDRoundTrip checks BindUID against the lookups, rebinding, and
// argument errors.
func TestBindUIDRoundTrip(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl1, cl2 := c.dial(g, dialOptions{}), c.dial(g, dialOptions{})
	id1, _ := c.idOf(cl1, w)
	id2, _ := c.idOf(cl2, w)

	if err := api.BindUID(testCtx(t), id1, "alice"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	checkUID(t, api, "alice", id1)
	checkUID(t, api, "bob")
	if uid, err := api.UIDByClientID(testCtx(t), id1); err != nil || uid != "alice" {
		t.Errorf("UIDByClientID(bound) = %q, %v; want alice", uid, err)
	}
	if uid, err := api.UIDByClientID(testCtx(t), id2); err != nil || uid != "" {
		t.Errorf("UIDByClientID(unbound) = %q, %v; want \"\"", uid, err)
	}

	// Binding again replaces the old uid.
	if err := api.BindUID(testCtx(t), id1, "bob"); err != nil {
		t.Fatalf("BindUID again: %v", err)
	}
	checkUID(t, api, "alice")
	checkUID(t, api, "bob", id1)
	if uid, err := api.UIDByClientID(testCtx(t), id1); err != nil || uid != "bob" {
		t.Errorf("UIDByClientID after rebind = %q, %v; want bob", uid, err)
	}

	if err := api.BindUID(testCtx(t), id2, ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("BindUID empty uid = %v, want ErrInvalidArgument", err)
	}
	if err := api.BindUID(testCtx(t), "bad", "carol"); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("BindUID malformed client_id = %v, want ErrInvalidArgument", err)
	}
	if err := api.BindUID(testCtx(t), clientid.Make(g.gw.ID(), 1<<40), "carol"); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("BindUID unknown client_id = %v, want ErrNotFound", err)
	}
	if _, err := api.UIDByClientID(testCtx(t), "bad"); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("UIDByClientID malformed = %v, want ErrInvalidArgument", err)
	}
	if _, err := api.ClientIDsByUID(testCtx(t), ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("ClientIDsByUID empty uid = %v, want ErrInvalidArgument", err)
	}
	checkUID(t, api, "carol")
}

// checkUID checks ClientIDsByUID and IsUIDOnline for uid against want.
func checkUID(t *testing.T, api worker.API, uid string, want ...string) {
	t.Helper()
	ids, err := api.ClientIDsByUID(testCtx(t), uid)
	if err != nil {
		t.Errorf("ClientIDsByUID(%q): %v", uid, err)
	}
	slices.Sort(ids)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(ids, want) {
		t.Errorf("ClientIDsByUID(%q) = %v, want %v", uid, ids, want)
	}
	online, err := api.IsUIDOnline(testCtx(t), uid)
	if err != nil || online != (len(want) > 0) {
		t.Errorf("IsUIDOnline(%q) = %v, %v; want %v", uid, online, err, len(want) > 0)
	}
}

// TestUnbindUID checks that unbinding another uid is a conflict and that
// unbinding the right one removes the binding.
func TestUnbindUID(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	if err := api.BindUID(testCtx(t), id, "carol"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	if err := api.UnbindUID(testCtx(t), id, "dave"); !errors.Is(err, worker.ErrConflict) {
		t.Errorf("UnbindUID other uid = %v, want ErrConflict", err)
	}
	checkUID(t, api, "carol", id)

	if err := api.UnbindUID(testCtx(t), id, "carol"); err != nil {
		t.Fatalf("UnbindUID: %v", err)
	}
	checkUID(t, api, "carol")
	if uid, err := api.UIDByClientID(testCtx(t), id); err != nil || uid != "" {
		t.Errorf("UIDByClientID after unbind = %q, %v; want \"\"", uid, err)
	}
	if err := api.UnbindUID(testCtx(t), id, "carol"); err != nil {
		t.Errorf("UnbindUID of an unbound connection = %v, want nil (no-op)", err)
	}
	if err := api.UnbindUID(testCtx(t), id, ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("UnbindUID empty uid = %v, want ErrInvalidArgument", err)
	}

	// The next event carries no uid.
	cl.send(t, "after unbind")
	eventually(t, "the message after the unbind", func() bool { return len(w.rec.messagesOf(id)) == 1 })
	if evs := w.rec.eventsOf(id); evs[len(evs)-1].client.UID != "" {
		t.Errorf("message after unbind: UID = %q, want \"\"", evs[len(evs)-1].client.UID)
	}
}

// TestBindUIDZero checks that "0" is a uid like any other.
func TestBindUIDZero(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	api := w.w.API()

	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	if err := api.BindUID(testCtx(t), id, "0"); err != nil {
		t.Fatalf("BindUID 0: %v", err)
	}
	checkUID(t, api, "0", id)
	if uid, err := api.UIDByClientID(testCtx(t), id); err != nil || uid != "0" {
		t.Errorf("UIDByClientID = %q, %v; want 0", uid, err)
	}
	n, err := api.SendToUID(testCtx(t), []string{"0"}, []byte("to zero"), false)
	if err != nil || n != 1 {
		t.Fatalf("SendToUID 0 = %d, %v; want 1", n, err)
	}
	if got := cl.waitMessages(t, 1); got[0].data != "to zero" {
		t.Errorf("client got %v, want [to zero]", got)
	}
}

// TestSendToUIDMultiDevice checks a uid bound on two connections held by
// two gateways: both receive, and the count says so.
func TestSendToUIDMultiDevice(t *testing.T) {
	c := newCluster(t)
	g1, g2 := c.startGateway(gateway.Config{}), c.startGateway(gateway.Config{})
	w := c.startWorker(g1, g2)
	api := w.w.API()

	phone, laptop := c.dial(g1, dialOptions{}), c.dial(g2, dialOptions{})
	other := c.dial(g1, dialOptions{})
	idPhone, _ := c.idOf(phone, w)
	idLaptop, _ := c.idOf(laptop, w)
	idOther, _ := c.idOf(other, w)
	for id, uid := range map[string]string{idPhone: "multi", idLaptop: "multi", idOther: "someone-else"} {
		if err := api.BindUID(testCtx(t), id, uid); err != nil {
			t.Fatalf("BindUID(%s, %s): %v", id, uid, err)
		}
	}
	checkUID(t, api, "multi", idPhone, idLaptop)

	n, err := api.SendToUID(testCtx(t), []string{"multi"}, []byte("both"), false)
	if err != nil || n != 2 {
		t.Fatalf("SendToUID = %d, %v; want 2", n, err)
	}
	n, err = api.SendToUID(testCtx(t), []string{"multi", "nobody"}, []byte("again"), false)
	if err != nil || n != 2 {
		t.Fatalf("SendToUID with an offline uid = %d, %v; want 2", n, err)
	}
	for _, cl := range []*client{phone, laptop} {
		got := cl.waitMessages(t, 2)
		if want := []wsMsg{{websocket.MessageText, "both"}, {websocket.MessageText, "again"}}; !slices.Equal(got, want) {
			t.Errorf("client %s got %v, want %v", cl.tag, got, want)
		}
	}
	n, err = api.SendToUID(testCtx(t), []string{"nobody"}, []byte("void"), false)
	if err != nil || n != 0 {
		t.Errorf("SendToUID offline uid = %d, %v; want 0, nil", n, err)
	}
	if _, err := api.SendToUID(testCtx(t), nil, []byte("void"), false); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("SendToUID no uid = %v, want ErrInvalidArgument", err)
	}
	// A frame that reaches nobody else proves the sends were not broadcast.
	if err := api.SendToClient(testCtx(t), idOther, []byte("only you"), false); err != nil {
		t.Fatalf("SendToClient: %v", err)
	}
	if got := other.waitMessages(t, 1); len(got) != 1 || got[0].data != "only you" {
		t.Errorf("the other client got %v, want only [only you]", got)
	}
}

// TestRemovedGatewayLooksOffline checks that as soon as a gateway leaves the
// live list its clients look offline, although the directory still holds
// their entries, and look online again when it comes back.
func TestRemovedGatewayLooksOffline(t *testing.T) {
	c := newCluster(t)
	// The removed gateway loses its only worker link: a short WorkerWait
	// keeps the close events of the cleanup from waiting long for one.
	g1 := c.startGateway(gateway.Config{WorkerWait: 200 * time.Millisecond})
	g2 := c.startGateway(gateway.Config{})
	w := c.startWorker(g1, g2)
	api := w.w.API()

	gone, stays := c.dial(g1, dialOptions{}), c.dial(g2, dialOptions{})
	idGone, _ := c.idOf(gone, w)
	idStays, _ := c.idOf(stays, w)
	if err := api.BindUID(testCtx(t), idGone, "ghost"); err != nil {
		t.Fatal(err)
	}
	if err := api.BindUID(testCtx(t), idStays, "stays"); err != nil {
		t.Fatal(err)
	}
	checkUID(t, api, "ghost", idGone)

	w.w.SetGateways([]*registerv1.Gateway{g2.info()})

	// No waiting: the filter applies from the moment the list changes.
	checkUID(t, api, "ghost")
	checkUID(t, api, "stays", idStays)
	if uid, err := api.UIDByClientID(testCtx(t), idGone); err != nil || uid != "" {
		t.Errorf("UIDByClientID on a removed gateway = %q, %v; want \"\"", uid, err)
	}
	if n, err := api.SendToUID(testCtx(t), []string{"ghost"}, []byte("x"), false); err != nil || n != 0 {
		t.Errorf("SendToUID on a removed gateway = %d, %v; want 0, nil", n, err)
	}
	if err := api.SendToClient(testCtx(t), idGone, []byte("x"), false); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("SendToClient on a removed gateway = %v, want ErrNotFound", err)
	}
	// The directory itself was not touched.
	if m, err := c.dir.ClientIDs(testCtx(t), "ghost"); err != nil || !slices.Equal(m["ghost"], []string{idGone}) {
		t.Errorf("directory ClientIDs(ghost) = %v, %v; want the entry kept", m, err)
	}
	if uid, err := c.dir.UID(testCtx(t), idGone); err != nil || uid != "ghost" {
		t.Errorf("directory UID = %q, %v; want ghost", uid, err)
	}

	w.w.SetGateways([]*registerv1.Gateway{g1.info(), g2.info()})
	checkUID(t, api, "ghost", idGone)
}

// twoWorkers starts a gateway with two workers and connects clients until
// each worker holds at least one: the gateway routes a new client to the
// least-loaded linked worker, so that happens once both are linked. It
// returns a client of the first worker and one of the second, with their
// client_ids.
func twoWorkers(c *cluster) (g *gatewayServer, w1, w2 *workerRun, x, y *client, idX, idY string) {
	t := c.t
	t.Helper()
	g = c.startGateway(gateway.Config{})
	w1, w2 = c.startWorker(g), c.startWorker(g)
	routed := map[*workerRun][]*client{}
	ids := map[*client]string{}
	deadline := time.Now().Add(waitFor)
	for len(routed[w1]) == 0 || len(routed[w2]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("clients never reached both workers: %d and %d", len(routed[w1]), len(routed[w2]))
		}
		cl := c.dial(g, dialOptions{})
		id, at := c.idOf(cl, w1, w2)
		routed[at] = append(routed[at], cl)
		ids[cl] = id
	}
	x, y = routed[w1][0], routed[w2][0]
	return g, w1, w2, x, y, ids[x], ids[y]
}

// TestStickyRerouteWhenWorkerStops checks that a client's events stay with
// one worker and move, in order, to the other when that worker stops.
func TestStickyRerouteWhenWorkerStops(t *testing.T) {
	c := newCluster(t)
	_, victim, survivor, x, y, idX, _ := twoWorkers(c)

	for i := range 5 {
		x.send(t, fmt.Sprintf("before-%d", i))
	}
	eventually(t, "the messages at the first worker", func() bool { return len(victim.rec.messagesOf(idX)) == 5 })
	if evs := survivor.rec.eventsOf(idX); len(evs) != 0 {
		t.Errorf("the other worker saw %v of a client routed elsewhere", kinds(evs))
	}

	if err := victim.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	// Until the gateway notices the stopped link, events routed to it are
	// lost (TestNoEventLostWhenWorkerStops); probe until one gets through.
	probes := 0
	eventually(t, "a message at the other worker", func() bool {
		if len(survivor.rec.messagesOf(idX)) > 0 {
			return true
		}
		x.send(t, fmt.Sprintf("probe-%d", probes))
		probes++
		return false
	})
	const n = 20
	for i := range n {
		x.send(t, fmt.Sprintf("after-%02d", i))
	}
	eventually(t, "the messages after the stop at the other worker", func() bool {
		return slices.Contains(survivor.rec.messagesOf(idX), fmt.Sprintf("after-%02d", n-1))
	})
	var after []string
	for _, m := range survivor.rec.messagesOf(idX) {
		if strings.HasPrefix(m, "after-") {
			after = append(after, m)
		}
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("after-%02d", i)
	}
	if !slices.Equal(after, want) {
		t.Errorf("the other worker got %v, want %v", after, want)
	}
	// The surviving worker can answer the re-routed client, and its own
	// client is unaffected.
	x.send(t, "echo:rerouted")
	y.send(t, "echo:unaffected")
	if got := x.waitMessages(t, 1); got[0].data != "rerouted" {
		t.Errorf("re-routed client got %v, want [rerouted]", got)
	}
	if got := y.waitMessages(t, 1); got[0].data != "unaffected" {
		t.Errorf("other client got %v, want [unaffected]", got)
	}
	if got := victim.rec.messagesOf(idX); len(got) != 5 {
		t.Errorf("the stopped worker handled %v, want only the 5 before it stopped", got)
	}
}

// TestNoEventLostWhenWorkerStops checks that once a worker's Run has
// returned, a client that was routed to it loses no event: its next
// message and its close reach the other worker.
// The stopping worker announces it is leaving and handles what the gateway
// sent before confirming the drain, so nothing queued for it is dropped.
func TestNoEventLostWhenWorkerStops(t *testing.T) {
	c := newCluster(t)
	_, victim, survivor, x, _, idX, _ := twoWorkers(c)
	if err := victim.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	const n = 10
	for i := range n {
		x.send(t, fmt.Sprintf("next-%d", i))
	}
	if err := x.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v", err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("next-%d", i)
	}
	deadline := time.Now().Add(waitFor)
	for !survivor.rec.has(idX, evClose) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := survivor.rec.messagesOf(idX); !slices.Equal(got, want) {
		t.Errorf("the other worker handled %v, want %v", got, want)
	}
	if !survivor.rec.has(idX, evClose) {
		t.Error("the other worker never saw the client close")
	}
}

// TestNoOverlapWhenWorkerStops checks that a client's events are still
// handled one at a time when its worker stops while handling one: the other
// worker must not start the next event before the stopping worker has
// finished the current one (Run waits for in-flight events).
// The gateway holds the client's next event until the leaving worker has
// closed its link, which it does only after its lanes are drained. The
// pauses below only give a re-route the chance to happen; the assertion is
// about order, so a correct gateway passes however long they are.
func TestNoOverlapWhenWorkerStops(t *testing.T) {
	c := newCluster(t)
	_, victim, survivor, x, _, idX, _ := twoWorkers(c)
	release := victim.rec.hold(t, "slow")
	x.send(t, "slow")
	eventually(t, "the first worker to start the slow message", func() bool {
		return slices.Contains(victim.rec.messagesOf(idX), "slow")
	})
	halted := make(chan struct{})
	go func() { defer close(halted); victim.halt() }()
	time.Sleep(300 * time.Millisecond) // let the gateway see the stream end
	x.send(t, "next")
	time.Sleep(300 * time.Millisecond) // let a re-routed "next" run
	release()
	<-halted
	if !victim.returned || victim.err != nil {
		t.Fatalf("Run returned %v, %v; want nil", victim.returned, victim.err)
	}
	victim.rec.checkNoProblems(t)
	survivor.rec.checkNoProblems(t)
}

// TestRunReturnsOnCancel checks that Run returns nil once its context ends,
// with a link open and a client connected, and that Run refuses to run
// twice or without a handler.
func TestRunReturnsOnCancel(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{WorkerWait: 200 * time.Millisecond})
	w := c.startWorker(g)
	cl := c.dial(g, dialOptions{})
	c.idOf(cl, w)

	if err := w.w.Run(testCtx(t), w.rec); err == nil {
		t.Error("second Run = nil, want an error")
	}
	if err := worker.New(worker.Config{}, c.dir, nil).Run(testCtx(t), nil); err == nil {
		t.Error("Run with a nil handler = nil, want an error")
	}
	if err := w.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
