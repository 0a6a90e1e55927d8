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
	"github.com/gatewire/gatewire/internal/linktest"
	"github.com/gatewire/gatewire/internal/worker"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConnectEvents checks that a new client produces OnConnect then
// OnWebSocketConnect, carrying its client_id, address and handshake.
func TestConnectEvents(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)

	h := http.Header{}
	h.Set("X-Test", "hello")
	h.Add("Cookie", "session=abc123; theme=dark")
	cl := c.DialWith(g, linktest.DialOptions{Path: "/chat/room", Query: "a=1&b=two", Header: h})
	id, _ := c.IDOf(cl, w)

	if gw, err := clientid.GatewayOf(id); err != nil || gw != g.GW.ID() {
		t.Errorf("client_id %q: gateway %q, %v; want gateway %q", id, gw, err, g.GW.ID())
	}
	evs := w.Rec.EventsOf(id)
	if len(evs) != 2 || evs[0].Kind != linktest.EvConnect || evs[1].Kind != linktest.EvWebSocket {
		t.Fatalf("events = %v, want [connect websocket]", kinds(evs))
	}
	for _, e := range evs {
		want := worker.Client{ID: id, RemoteAddress: cl.Local, GatewayAddress: g.WSAddr}
		if !reflect.DeepEqual(e.Client, want) {
			t.Errorf("%s: client = %+v, want %+v", e.Kind, e.Client, want)
		}
	}
	req := evs[1].Req
	if req.Path != "/chat/room" {
		t.Errorf("path = %q, want /chat/room", req.Path)
	}
	if want := "tag=" + cl.Tag + "&a=1&b=two"; req.Query != want {
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

func kinds(evs []linktest.Event) []linktest.EventKind {
	out := make([]linktest.EventKind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

// TestMessageOrderPerClient checks that 200 rapid messages of one client
// reach the handler in order, one at a time, while other clients' messages
// interleave.
func TestMessageOrderPerClient(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)

	const n = 200
	clients := []*linktest.Client{c.Dial(g), c.Dial(g), c.Dial(g)}
	ids := make([]string, len(clients))
	for i, cl := range clients {
		ids[i], _ = c.IDOf(cl, w)
	}
	ctx := linktest.Ctx(t)
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			for i := range n {
				if err := cl.WS.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "%s-%03d", cl.Tag, i)); err != nil {
					t.Errorf("client %s: write %d: %v", cl.Tag, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, cl := range clients {
		linktest.Eventually(t, fmt.Sprintf("%d messages of client %s", n, cl.Tag), func() bool { return len(w.Rec.MessagesOf(ids[i])) >= n })
		got := w.Rec.MessagesOf(ids[i])
		want := make([]string, n)
		for j := range want {
			want[j] = fmt.Sprintf("%s-%03d", cl.Tag, j)
		}
		if !slices.Equal(got, want) {
			t.Errorf("client %s: messages out of order or duplicated:\n got %v\nwant %v", cl.Tag, got, want)
		}
	}
}

// TestOnCloseCarriesUID checks that OnClose is the client's last event and
// carries the uid the connection had, and that events after a bind carry it
// too.
func TestOnCloseCarriesUID(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if err := api.BindUID(linktest.Ctx(t), id, "u-close"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	cl.Send(t, "after bind")
	linktest.Eventually(t, "the message after the bind", func() bool { return len(w.Rec.MessagesOf(id)) == 1 })
	if err := cl.WS.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client close: %v", err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })

	evs := w.Rec.EventsOf(id)
	if got, want := kinds(evs), []linktest.EventKind{linktest.EvConnect, linktest.EvWebSocket, linktest.EvMessage, linktest.EvClose}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if uid := evs[2].Client.UID; uid != "u-close" {
		t.Errorf("message after bind: UID = %q, want u-close", uid)
	}
	if uid := evs[3].Client.UID; uid != "u-close" {
		t.Errorf("OnClose: UID = %q, want u-close", uid)
	}
}

// TestUIDOfflineAfterDisconnect checks that a uid stays online while one of
// its connections remains and goes offline when the last one leaves.
func TestUIDOfflineAfterDisconnect(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl1, cl2 := c.Dial(g), c.Dial(g)
	id1, _ := c.IDOf(cl1, w)
	id2, _ := c.IDOf(cl2, w)
	for _, id := range []string{id1, id2} {
		if err := api.BindUID(linktest.Ctx(t), id, "leaver"); err != nil {
			t.Fatalf("BindUID %s: %v", id, err)
		}
	}
	if err := cl1.WS.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close client 1: %v", err)
	}
	linktest.Eventually(t, "OnClose of client 1", func() bool { return w.Rec.Has(id1, linktest.EvClose) })
	linktest.Eventually(t, "client 1 to leave the uid", func() bool {
		ids, err := api.ClientIDsByUID(linktest.Ctx(t), "leaver")
		return err == nil && slices.Equal(ids, []string{id2})
	})
	if online, err := api.IsUIDOnline(linktest.Ctx(t), "leaver"); err != nil || !online {
		t.Errorf("IsUIDOnline with one connection left = %v, %v; want true", online, err)
	}

	_ = cl2.WS.CloseNow() // dropped, not closed: the gateway must notice too
	linktest.Eventually(t, "OnClose of client 2", func() bool { return w.Rec.Has(id2, linktest.EvClose) })
	linktest.Eventually(t, "the uid to go offline", func() bool {
		online, err := api.IsUIDOnline(linktest.Ctx(t), "leaver")
		return err == nil && !online
	})
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id2); err != nil || uid != "" {
		t.Errorf("UIDByClientID of a closed client = %q, %v; want \"\"", uid, err)
	}
}

// TestSendToClient checks sends to a live client and the errors for
// unknown, closed and malformed client_ids.
func TestSendToClient(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if err := api.SendToClient(linktest.Ctx(t), id, []byte("hello"), false); err != nil {
		t.Fatalf("SendToClient text: %v", err)
	}
	if err := api.SendToClient(linktest.Ctx(t), id, []byte{0, 1, 2}, true); err != nil {
		t.Fatalf("SendToClient binary: %v", err)
	}
	got := cl.WaitMessages(t, 2)
	want := []linktest.Frame{{Type: websocket.MessageText, Data: "hello"}, {Type: websocket.MessageBinary, Data: "\x00\x01\x02"}}
	if !slices.Equal(got, want) {
		t.Errorf("client got %v, want %v", got, want)
	}

	for _, tc := range []struct {
		name, id string
		want     error
	}{
		{"never connected on a live gateway", clientid.Make(g.GW.ID(), 1<<40), worker.ErrNotFound},
		{"unknown gateway", clientid.Make(clientid.NewGatewayID(), 1), worker.ErrNotFound},
		{"too short", "not-a-client-id", worker.ErrInvalidArgument},
		{"not hex", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", worker.ErrInvalidArgument},
		{"empty", "", worker.ErrInvalidArgument},
	} {
		if err := api.SendToClient(linktest.Ctx(t), tc.id, []byte("x"), false); !errors.Is(err, tc.want) {
			t.Errorf("SendToClient(%s %q) = %v, want %v", tc.name, tc.id, err, tc.want)
		}
	}

	if err := cl.WS.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v", err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	if err := api.SendToClient(linktest.Ctx(t), id, []byte("late"), false); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("SendToClient to a closed client = %v, want ErrNotFound", err)
	}
}

// TestBindUIDRoundTrip checks BindUID against the lookups, rebinding, and
// argument errors.
func TestBindUIDRoundTrip(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl1, cl2 := c.Dial(g), c.Dial(g)
	id1, _ := c.IDOf(cl1, w)
	id2, _ := c.IDOf(cl2, w)

	if err := api.BindUID(linktest.Ctx(t), id1, "alice"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	checkUID(t, api, "alice", id1)
	checkUID(t, api, "bob")
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id1); err != nil || uid != "alice" {
		t.Errorf("UIDByClientID(bound) = %q, %v; want alice", uid, err)
	}
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id2); err != nil || uid != "" {
		t.Errorf("UIDByClientID(unbound) = %q, %v; want \"\"", uid, err)
	}

	// Binding again replaces the old uid.
	if err := api.BindUID(linktest.Ctx(t), id1, "bob"); err != nil {
		t.Fatalf("BindUID again: %v", err)
	}
	checkUID(t, api, "alice")
	checkUID(t, api, "bob", id1)
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id1); err != nil || uid != "bob" {
		t.Errorf("UIDByClientID after rebind = %q, %v; want bob", uid, err)
	}

	if err := api.BindUID(linktest.Ctx(t), id2, ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("BindUID empty uid = %v, want ErrInvalidArgument", err)
	}
	if err := api.BindUID(linktest.Ctx(t), "bad", "carol"); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("BindUID malformed client_id = %v, want ErrInvalidArgument", err)
	}
	if err := api.BindUID(linktest.Ctx(t), clientid.Make(g.GW.ID(), 1<<40), "carol"); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("BindUID unknown client_id = %v, want ErrNotFound", err)
	}
	if _, err := api.UIDByClientID(linktest.Ctx(t), "bad"); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("UIDByClientID malformed = %v, want ErrInvalidArgument", err)
	}
	if _, err := api.ClientIDsByUID(linktest.Ctx(t), ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("ClientIDsByUID empty uid = %v, want ErrInvalidArgument", err)
	}
	checkUID(t, api, "carol")
}

// checkUID checks ClientIDsByUID and IsUIDOnline for uid against want.
func checkUID(t *testing.T, api worker.API, uid string, want ...string) {
	t.Helper()
	ids, err := api.ClientIDsByUID(linktest.Ctx(t), uid)
	if err != nil {
		t.Errorf("ClientIDsByUID(%q): %v", uid, err)
	}
	slices.Sort(ids)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(ids, want) {
		t.Errorf("ClientIDsByUID(%q) = %v, want %v", uid, ids, want)
	}
	online, err := api.IsUIDOnline(linktest.Ctx(t), uid)
	if err != nil || online != (len(want) > 0) {
		t.Errorf("IsUIDOnline(%q) = %v, %v; want %v", uid, online, err, len(want) > 0)
	}
}

// TestUnbindUID checks that unbinding another uid is a conflict and that
// unbinding the right one removes the binding.
func TestUnbindUID(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if err := api.BindUID(linktest.Ctx(t), id, "carol"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	if err := api.UnbindUID(linktest.Ctx(t), id, "dave"); !errors.Is(err, worker.ErrConflict) {
		t.Errorf("UnbindUID other uid = %v, want ErrConflict", err)
	}
	checkUID(t, api, "carol", id)

	if err := api.UnbindUID(linktest.Ctx(t), id, "carol"); err != nil {
		t.Fatalf("UnbindUID: %v", err)
	}
	checkUID(t, api, "carol")
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id); err != nil || uid != "" {
		t.Errorf("UIDByClientID after unbind = %q, %v; want \"\"", uid, err)
	}
	if err := api.UnbindUID(linktest.Ctx(t), id, "carol"); err != nil {
		t.Errorf("UnbindUID of an unbound connection = %v, want nil (no-op)", err)
	}
	if err := api.UnbindUID(linktest.Ctx(t), id, ""); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("UnbindUID empty uid = %v, want ErrInvalidArgument", err)
	}

	// The next event carries no uid.
	cl.Send(t, "after unbind")
	linktest.Eventually(t, "the message after the unbind", func() bool { return len(w.Rec.MessagesOf(id)) == 1 })
	if evs := w.Rec.EventsOf(id); evs[len(evs)-1].Client.UID != "" {
		t.Errorf("message after unbind: UID = %q, want \"\"", evs[len(evs)-1].Client.UID)
	}
}

// TestBindUIDZero checks that "0" is a uid like any other.
func TestBindUIDZero(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if err := api.BindUID(linktest.Ctx(t), id, "0"); err != nil {
		t.Fatalf("BindUID 0: %v", err)
	}
	checkUID(t, api, "0", id)
	if uid, err := api.UIDByClientID(linktest.Ctx(t), id); err != nil || uid != "0" {
		t.Errorf("UIDByClientID = %q, %v; want 0", uid, err)
	}
	n, err := api.SendToUID(linktest.Ctx(t), []string{"0"}, []byte("to zero"), false)
	if err != nil || n != 1 {
		t.Fatalf("SendToUID 0 = %d, %v; want 1", n, err)
	}
	if got := cl.WaitMessages(t, 1); got[0].Data != "to zero" {
		t.Errorf("client got %v, want [to zero]", got)
	}
}

// TestSendToUIDMultiDevice checks a uid bound on two connections held by
// two gateways: both receive, and the count says so.
func TestSendToUIDMultiDevice(t *testing.T) {
	c := linktest.New(t)
	g1, g2 := c.StartGateway(gateway.Config{}), c.StartGateway(gateway.Config{})
	w := c.StartWorker(g1, g2)
	api := w.W.API()

	phone, laptop := c.Dial(g1), c.Dial(g2)
	other := c.Dial(g1)
	idPhone, _ := c.IDOf(phone, w)
	idLaptop, _ := c.IDOf(laptop, w)
	idOther, _ := c.IDOf(other, w)
	for id, uid := range map[string]string{idPhone: "multi", idLaptop: "multi", idOther: "someone-else"} {
		if err := api.BindUID(linktest.Ctx(t), id, uid); err != nil {
			t.Fatalf("BindUID(%s, %s): %v", id, uid, err)
		}
	}
	checkUID(t, api, "multi", idPhone, idLaptop)

	n, err := api.SendToUID(linktest.Ctx(t), []string{"multi"}, []byte("both"), false)
	if err != nil || n != 2 {
		t.Fatalf("SendToUID = %d, %v; want 2", n, err)
	}
	n, err = api.SendToUID(linktest.Ctx(t), []string{"multi", "nobody"}, []byte("again"), false)
	if err != nil || n != 2 {
		t.Fatalf("SendToUID with an offline uid = %d, %v; want 2", n, err)
	}
	for _, cl := range []*linktest.Client{phone, laptop} {
		got := cl.WaitMessages(t, 2)
		if want := []linktest.Frame{{Type: websocket.MessageText, Data: "both"}, {Type: websocket.MessageText, Data: "again"}}; !slices.Equal(got, want) {
			t.Errorf("client %s got %v, want %v", cl.Tag, got, want)
		}
	}
	n, err = api.SendToUID(linktest.Ctx(t), []string{"nobody"}, []byte("void"), false)
	if err != nil || n != 0 {
		t.Errorf("SendToUID offline uid = %d, %v; want 0, nil", n, err)
	}
	if _, err := api.SendToUID(linktest.Ctx(t), nil, []byte("void"), false); !errors.Is(err, worker.ErrInvalidArgument) {
		t.Errorf("SendToUID no uid = %v, want ErrInvalidArgument", err)
	}
	// A frame that reaches nobody else proves the sends were not broadcast.
	if err := api.SendToClient(linktest.Ctx(t), idOther, []byte("only you"), false); err != nil {
		t.Fatalf("SendToClient: %v", err)
	}
	if got := other.WaitMessages(t, 1); len(got) != 1 || got[0].Data != "only you" {
		t.Errorf("the other client got %v, want only [only you]", got)
	}
}

// TestRemovedGatewayLooksOffline checks that as soon as a gateway leaves the
// live list its clients look offline, although the directory still holds
// their entries, and look online again when it comes back.
func TestRemovedGatewayLooksOffline(t *testing.T) {
	c := linktest.New(t)
	// The removed gateway loses its only worker link: a short WorkerWait
	// keeps the close events of the cleanup from waiting long for one.
	g1 := c.StartGateway(gateway.Config{WorkerWait: 200 * time.Millisecond})
	g2 := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g1, g2)
	api := w.W.API()

	gone, stays := c.Dial(g1), c.Dial(g2)
	idGone, _ := c.IDOf(gone, w)
	idStays, _ := c.IDOf(stays, w)
	if err := api.BindUID(linktest.Ctx(t), idGone, "ghost"); err != nil {
		t.Fatal(err)
	}
	if err := api.BindUID(linktest.Ctx(t), idStays, "stays"); err != nil {
		t.Fatal(err)
	}
	checkUID(t, api, "ghost", idGone)

	w.W.SetGateways([]*registerv1.Gateway{g2.Info()})

	// No waiting: the filter applies from the moment the list changes.
	checkUID(t, api, "ghost")
	checkUID(t, api, "stays", idStays)
	if uid, err := api.UIDByClientID(linktest.Ctx(t), idGone); err != nil || uid != "" {
		t.Errorf("UIDByClientID on a removed gateway = %q, %v; want \"\"", uid, err)
	}
	if n, err := api.SendToUID(linktest.Ctx(t), []string{"ghost"}, []byte("x"), false); err != nil || n != 0 {
		t.Errorf("SendToUID on a removed gateway = %d, %v; want 0, nil", n, err)
	}
	if err := api.SendToClient(linktest.Ctx(t), idGone, []byte("x"), false); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("SendToClient on a removed gateway = %v, want ErrNotFound", err)
	}
	// The directory itself was not touched.
	if m, err := c.Dir.ClientIDs(linktest.Ctx(t), "ghost"); err != nil || !slices.Equal(m["ghost"], []string{idGone}) {
		t.Errorf("directory ClientIDs(ghost) = %v, %v; want the entry kept", m, err)
	}
	if uid, err := c.Dir.UID(linktest.Ctx(t), idGone); err != nil || uid != "ghost" {
		t.Errorf("directory UID = %q, %v; want ghost", uid, err)
	}

	w.W.SetGateways([]*registerv1.Gateway{g1.Info(), g2.Info()})
	checkUID(t, api, "ghost", idGone)
}

// twoWorkers starts a gateway with two workers and connects clients until
// each worker holds at least one: the gateway routes a new client to the
// least-loaded linked worker, so that happens once both are linked. It
// returns a client of the first worker and one of the second, with their
// client_ids.
func twoWorkers(c *linktest.Cluster) (g *linktest.Gateway, w1, w2 *linktest.Worker, x, y *linktest.Client, idX, idY string) {
	t := c.T
	t.Helper()
	g = c.StartGateway(gateway.Config{})
	w1, w2 = c.StartWorker(g), c.StartWorker(g)
	routed := map[*linktest.Worker][]*linktest.Client{}
	ids := map[*linktest.Client]string{}
	deadline := time.Now().Add(linktest.WaitFor)
	for len(routed[w1]) == 0 || len(routed[w2]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("clients never reached both workers: %d and %d", len(routed[w1]), len(routed[w2]))
		}
		cl := c.Dial(g)
		id, at := c.IDOf(cl, w1, w2)
		routed[at] = append(routed[at], cl)
		ids[cl] = id
	}
	x, y = routed[w1][0], routed[w2][0]
	return g, w1, w2, x, y, ids[x], ids[y]
}

// TestStickyRerouteWhenWorkerStops checks that a client's events stay with
// one worker and move, in order, to the other when that worker stops.
func TestStickyRerouteWhenWorkerStops(t *testing.T) {
	c := linktest.New(t)
	_, victim, survivor, x, y, idX, _ := twoWorkers(c)

	for i := range 5 {
		x.Send(t, fmt.Sprintf("before-%d", i))
	}
	linktest.Eventually(t, "the messages at the first worker", func() bool { return len(victim.Rec.MessagesOf(idX)) == 5 })
	if evs := survivor.Rec.EventsOf(idX); len(evs) != 0 {
		t.Errorf("the other worker saw %v of a client routed elsewhere", kinds(evs))
	}

	if err := victim.Stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	// Until the gateway notices the stopped link, events routed to it are
	// lost (TestNoEventLostWhenWorkerStops); probe until one gets through.
	probes := 0
	linktest.Eventually(t, "a message at the other worker", func() bool {
		if len(survivor.Rec.MessagesOf(idX)) > 0 {
			return true
		}
		x.Send(t, fmt.Sprintf("probe-%d", probes))
		probes++
		return false
	})
	const n = 20
	for i := range n {
		x.Send(t, fmt.Sprintf("after-%02d", i))
	}
	linktest.Eventually(t, "the messages after the stop at the other worker", func() bool {
		return slices.Contains(survivor.Rec.MessagesOf(idX), fmt.Sprintf("after-%02d", n-1))
	})
	var after []string
	for _, m := range survivor.Rec.MessagesOf(idX) {
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
	x.Send(t, "echo:rerouted")
	y.Send(t, "echo:unaffected")
	if got := x.WaitMessages(t, 1); got[0].Data != "rerouted" {
		t.Errorf("re-routed client got %v, want [rerouted]", got)
	}
	if got := y.WaitMessages(t, 1); got[0].Data != "unaffected" {
		t.Errorf("other client got %v, want [unaffected]", got)
	}
	if got := victim.Rec.MessagesOf(idX); len(got) != 5 {
		t.Errorf("the stopped worker handled %v, want only the 5 before it stopped", got)
	}
}

// TestNoEventLostWhenWorkerStops checks that once a worker's Run has
// returned, a client that was routed to it loses no event: its next
// message and its close reach the other worker.
// The stopping worker announces it is leaving and handles what the gateway
// sent before confirming the drain, so nothing queued for it is dropped.
func TestNoEventLostWhenWorkerStops(t *testing.T) {
	c := linktest.New(t)
	_, victim, survivor, x, _, idX, _ := twoWorkers(c)
	if err := victim.Stop(t); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	const n = 10
	for i := range n {
		x.Send(t, fmt.Sprintf("next-%d", i))
	}
	if err := x.WS.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v", err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("next-%d", i)
	}
	deadline := time.Now().Add(linktest.WaitFor)
	for !survivor.Rec.Has(idX, linktest.EvClose) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := survivor.Rec.MessagesOf(idX); !slices.Equal(got, want) {
		t.Errorf("the other worker handled %v, want %v", got, want)
	}
	if !survivor.Rec.Has(idX, linktest.EvClose) {
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
	c := linktest.New(t)
	_, victim, survivor, x, _, idX, _ := twoWorkers(c)
	release := victim.Rec.Hold(t, "slow")
	x.Send(t, "slow")
	linktest.Eventually(t, "the first worker to start the slow message", func() bool {
		return slices.Contains(victim.Rec.MessagesOf(idX), "slow")
	})
	halted := make(chan struct{})
	go func() { defer close(halted); victim.Halt() }()
	time.Sleep(300 * time.Millisecond) // let the gateway see the stream end
	x.Send(t, "next")
	time.Sleep(300 * time.Millisecond) // let a re-routed "next" run
	release()
	<-halted
	if err := victim.Stop(t); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	victim.Rec.CheckNoProblems(t)
	survivor.Rec.CheckNoProblems(t)
}

// TestRunReturnsOnCancel checks that Run returns nil once its context ends,
// with a link open and a client connected, and that Run refuses to run
// twice or without a handler.
func TestRunReturnsOnCancel(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{WorkerWait: 200 * time.Millisecond})
	w := c.StartWorker(g)
	cl := c.Dial(g)
	c.IDOf(cl, w)

	if err := w.W.Run(linktest.Ctx(t), w.Rec); err == nil {
		t.Error("second Run = nil, want an error")
	}
	if err := worker.New(worker.Config{}, c.Dir, nil).Run(linktest.Ctx(t), nil); err == nil {
		t.Error("Run with a nil handler = nil, want an error")
	}
	if err := w.Stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
