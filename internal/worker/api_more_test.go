package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
	"github.com/gatewire/gatewire/internal/worker"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// linkCommands counts the commands a gateway's link service receives, by
// kind, and keeps the client_ids of each Send.
type linkCommands struct {
	mu       sync.Mutex
	kinds    map[string]int
	sendIDs  [][]string
	messages [][]string // the kinds of each stream message's commands
}

func (lc *linkCommands) note(cmds []*linkv1.Command) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.kinds == nil {
		lc.kinds = make(map[string]int)
	}
	var msg []string
	for _, cmd := range cmds {
		kind := fmt.Sprintf("%T", cmd.GetKind())
		switch k := cmd.GetKind().(type) {
		case *linkv1.Command_Send:
			kind = "send"
			if cmd.GetId() == 0 {
				kind = "post" // no result wanted
			}
			lc.sendIDs = append(lc.sendIDs, slices.Clone(k.Send.GetClientIds()))
		case *linkv1.Command_SendAll:
			kind = "send_all"
		}
		lc.kinds[kind]++
		msg = append(msg, kind)
	}
	if len(msg) > 0 {
		lc.messages = append(lc.messages, msg)
	}
}

// takeMessages returns the kinds of the commands in each stream message
// since the last call, and forgets them.
func (lc *linkCommands) takeMessages() [][]string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	msgs := lc.messages
	lc.messages = nil
	return msgs
}

// take returns the counts and Sends since the last take, and forgets them.
func (lc *linkCommands) take() (map[string]int, [][]string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	kinds, ids := lc.kinds, lc.sendIDs
	lc.kinds, lc.sendIDs = nil, nil
	if kinds == nil {
		kinds = map[string]int{}
	}
	return kinds, ids
}

// intercept wraps every link stream so that its received messages are
// counted.
func (lc *linkCommands) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &countingStream{ServerStream: ss, lc: lc})
}

type countingStream struct {
	grpc.ServerStream
	lc *linkCommands
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*linkv1.ConnectRequest); ok && err == nil {
		s.lc.note(req.GetCommands())
	}
	return err
}

// startCountingGateway is Cluster.StartGateway with lc counting the
// commands the gateway receives.
func startCountingGateway(c *linktest.Cluster, lc *linkCommands) *linktest.Gateway {
	c.T.Helper()
	return c.StartGatewayOn(gateway.Config{}, c.Dir, grpc.StreamInterceptor(lc.intercept))
}

// TestBroadcastOneCommandPerGateway checks that SendToAll, SendToGroup and
// Post to 20 clients on two gateways send one command to each gateway,
// which fans out, that Post's asks for no result, and that every client
// gets each frame once.
func TestBroadcastOneCommandPerGateway(t *testing.T) {
	c := linktest.New(t)
	var lc0, lc1 linkCommands
	g0, g1 := startCountingGateway(c, &lc0), startCountingGateway(c, &lc1)
	w := c.StartWorker(g0, g1)
	api := w.W.API()
	ctx := linktest.Ctx(t)

	const n = 20
	clients := make([]*linktest.Client, n)
	idsOn := map[*linktest.Gateway][]string{}
	var all []string
	for i := range n {
		g := []*linktest.Gateway{g0, g1}[i%2]
		clients[i] = c.Dial(g)
		id, _ := c.IDOf(clients[i], w)
		if err := api.JoinGroup(ctx, id, "room"); err != nil {
			t.Fatalf("JoinGroup(%s): %v", id, err)
		}
		idsOn[g] = append(idsOn[g], id)
		all = append(all, id)
	}
	counters := map[*linktest.Gateway]*linkCommands{g0: &lc0, g1: &lc1}
	for _, lc := range counters {
		lc.take()
	}
	check := func(call string, wantKind string) {
		t.Helper()
		for g, lc := range counters {
			kinds, sends := lc.take()
			if want := map[string]int{wantKind: 1}; !reflect.DeepEqual(kinds, want) {
				t.Errorf("%s: gateway %s received commands %v, want %v", call, g.GW.ID(), kinds, want)
			}
			if wantKind != "send" && wantKind != "post" {
				continue
			}
			if len(sends) != 1 || !slices.Equal(sortedIDs(sends[0]), sortedIDs(idsOn[g])) {
				t.Errorf("%s: gateway %s received Sends to %v, want one to its %d clients %v", call, g.GW.ID(), sends, len(idsOn[g]), sortedIDs(idsOn[g]))
			}
		}
	}

	if got, err := api.SendToAll(ctx, []byte("to all"), false, nil, nil); err != nil || got != n {
		t.Fatalf("SendToAll = %d, %v; want %d", got, err, n)
	}
	check("SendToAll", "send_all")
	if got, err := api.SendToGroup(ctx, []string{"room"}, []byte("to room"), false, nil); err != nil || got != n {
		t.Fatalf("SendToGroup = %d, %v; want %d", got, err, n)
	}
	check("SendToGroup", "send")
	if got, err := api.SendToAll(ctx, []byte("to list"), true, all, nil); err != nil || got != n {
		t.Fatalf("SendToAll(client_ids) = %d, %v; want %d", got, err, n)
	}
	check("SendToAll(client_ids)", "send")

	if err := api.Post(ctx, all, []byte("posted"), false); err != nil {
		t.Fatalf("Post: %v", err)
	}

	want := []linktest.Frame{{Type: websocket.MessageText, Data: "to all"}, {Type: websocket.MessageText, Data: "to room"}, {Type: websocket.MessageBinary, Data: "to list"}, {Type: websocket.MessageText, Data: "posted"}}
	for _, cl := range clients {
		cl.WaitMessages(t, len(want))
	}
	check("Post", "post")              // the frames arrived, so did the commands
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive meanwhile
	for _, cl := range clients {
		if got := cl.Messages(); !slices.Equal(got, want) {
			t.Errorf("client %s received %v, want %v", cl.Tag, got, want)
		}
	}
}

// TestPostLinger checks that a posted command waits on its link, up to
// the worker's PostLinger, for a command that is answered, and then goes
// before it in the same stream message; that one posted alone goes when
// the linger ends; and that a leaving worker sends what waits at once.
func TestPostLinger(t *testing.T) {
	c := linktest.New(t)
	var lc linkCommands
	g := startCountingGateway(c, &lc)
	long := c.StartWorkerConfig(worker.Config{PostLinger: time.Hour}, g)
	short := c.StartWorkerConfig(worker.Config{PostLinger: 20 * time.Millisecond}, g)
	ctx := linktest.Ctx(t)
	cl := c.Dial(g)
	id, _ := c.IDOf(cl, long, short)
	linktest.Eventually(t, "both workers' links", func() bool {
		_, errLong := long.W.API().IsOnline(ctx, id)
		_, errShort := short.W.API().IsOnline(ctx, id)
		return errLong == nil && errShort == nil
	})
	lc.takeMessages()

	if err := short.W.API().Post(ctx, []string{id}, []byte("alone"), false); err != nil {
		t.Fatalf("Post: %v", err)
	}
	cl.WaitMessages(t, 1)

	if err := long.W.API().Post(ctx, []string{id}, []byte("posted"), false); err != nil {
		t.Fatalf("Post: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the frame would arrive meanwhile
	if got := cl.Messages(); len(got) != 1 {
		t.Fatalf("before any call the client received %v, want only the first post", got)
	}
	if n, err := long.W.API().SendToAll(ctx, []byte("sent"), false, []string{id}, nil); err != nil || n != 1 {
		t.Fatalf("SendToAll = %d, %v; want 1", n, err)
	}
	want := []linktest.Frame{{Type: websocket.MessageText, Data: "alone"}, {Type: websocket.MessageText, Data: "posted"}, {Type: websocket.MessageText, Data: "sent"}}
	if got := cl.WaitMessages(t, 3); !slices.Equal(got, want) {
		t.Fatalf("client received %v, want %v", got, want)
	}
	if got, want := lc.takeMessages(), [][]string{{"post"}, {"post", "send"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the gateway received stream messages of %v, want %v", got, want)
	}

	if err := long.W.API().Post(ctx, []string{id}, []byte("leaving"), false); err != nil {
		t.Fatalf("Post: %v", err)
	}
	if err := long.Stop(t); err != nil {
		t.Fatalf("worker Run: %v", err)
	}
	if got := cl.WaitMessages(t, 4); got[3].Data != "leaving" {
		t.Errorf("client received %v, want the post of the leaving worker last", got)
	}
}

func sortedIDs(xs []string) []string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs
}

// hungGateway is a link service that accepts a worker's stream and greets
// it, and then never answers a command (it does confirm a drain, so that
// the worker stops promptly).
type hungGateway struct {
	linkv1.UnimplementedLinkServiceServer
	id   string
	addr string

	mu       sync.Mutex
	commands int
}

func (h *hungGateway) Connect(stream linkv1.LinkService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&linkv1.ConnectResponse{Hello: &linkv1.GatewayHello{GatewayId: h.id, PublicAddress: h.addr}}); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		h.mu.Lock()
		h.commands += len(req.GetCommands())
		h.mu.Unlock()
		if req.GetLeaving() {
			if err := stream.Send(&linkv1.ConnectResponse{Drained: true}); err != nil {
				return nil
			}
		}
	}
}

func (h *hungGateway) received() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.commands
}

func (h *hungGateway) Info() *registerv1.Gateway {
	return &registerv1.Gateway{Id: h.id, LinkAddress: h.addr, PublicAddress: h.addr}
}

// startHungGateway serves a hungGateway until the test ends.
func startHungGateway(t *testing.T) *hungGateway {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hungGateway{id: clientid.NewGatewayID(), addr: lis.Addr().String()}
	gs := grpc.NewServer()
	linkv1.RegisterLinkServiceServer(gs, h)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return h
}

// TestHungGatewayBoundsClusterQueries checks that a gateway that accepts
// its link but never answers costs a cluster-wide query at most its
// deadline: ClientCount, Clients and SendToAll return the live gateways'
// results with an *IncompleteError naming the hung gateway.
func TestHungGatewayBoundsClusterQueries(t *testing.T) {
	c := linktest.New(t)
	g0, g1 := c.StartGateway(gateway.Config{}), c.StartGateway(gateway.Config{})
	w := c.StartWorker(g0, g1)
	api := w.W.API()

	var ids []string
	for _, g := range []*linktest.Gateway{g0, g0, g1} {
		id, _ := c.IDOf(c.Dial(g), w)
		ids = append(ids, id)
	}
	if err := api.JoinGroup(linktest.Ctx(t), ids[2], "grp"); err != nil {
		t.Fatalf("JoinGroup: %v", err)
	}
	hung := startHungGateway(t)
	w.W.SetGateways([]*registerv1.Gateway{g0.Info(), g1.Info(), hung.Info()})
	// Once a command reaches it, the link to the hung gateway is up.
	linktest.Eventually(t, "a command to reach the hung gateway", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _ = api.ClientCount(ctx, "")
		return hung.received() > 0
	})

	// bounded runs call with a 300ms deadline and checks that it returns
	// soon (the bound is generous: the point is that it does not hang) with
	// an error naming the hung gateway, and that the hung gateway was asked.
	bounded := func(what string, call func(ctx context.Context) error) {
		t.Helper()
		before := hung.received()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %v with a 300ms deadline", what, took)
		}
		var ie *worker.IncompleteError
		if !errors.As(err, &ie) || !slices.Equal(ie.Gateways, []string{hung.id}) {
			t.Errorf("%s: error %v, want an *IncompleteError naming gateway %s", what, err, hung.id)
		}
		if !errors.Is(err, worker.ErrUnavailable) {
			t.Errorf("%s: error %v does not match ErrUnavailable", what, err)
		}
		if hung.received() <= before {
			t.Errorf("%s did not ask the hung gateway", what)
		}
	}
	bounded("ClientCount", func(ctx context.Context) error {
		n, err := api.ClientCount(ctx, "")
		if n != len(ids) {
			t.Errorf("ClientCount = %d, want the live gateways' %d", n, len(ids))
		}
		return err
	})
	bounded("Clients", func(ctx context.Context) error {
		cs, err := api.Clients(ctx, "")
		var got []string
		for _, ci := range cs {
			got = append(got, ci.ClientID)
		}
		if !slices.Equal(sortedIDs(got), sortedIDs(ids)) {
			t.Errorf("Clients = %v, want the live gateways' %v", got, sortedIDs(ids))
		}
		return err
	})
	bounded("SendToAll", func(ctx context.Context) error {
		n, err := api.SendToAll(ctx, []byte("despite the hung one"), false, nil, nil)
		if n != len(ids) {
			t.Errorf("SendToAll delivered %d, want the live gateways' %d", n, len(ids))
		}
		return err
	})

	// Queries that only need the gateways holding members do not ask it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := api.ClientCount(ctx, "grp"); err != nil || n != 1 {
		t.Errorf(`ClientCount("grp") = %d, %v; want 1`, n, err)
	}
	if cs, err := api.Clients(ctx, "grp"); err != nil || len(cs) != 1 || cs[0].ClientID != ids[2] || !slices.Equal(cs[0].Groups, []string{"grp"}) {
		t.Errorf(`Clients("grp") = %+v, %v; want just %s in grp`, cs, err, ids[2])
	}
}

// TestSessionsReachHandler checks UpdateSession's merge, that the session reaches the
// Handler with the client's next event, and that OnClose carries the uid and
// the session the connection had.
func TestSessionsReachHandler(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	api := w.W.API()
	ctx := linktest.Ctx(t)

	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	if evs := w.Rec.EventsOf(id); len(evs) == 0 || evs[0].Client.Session != nil {
		t.Errorf("connect event = %+v, want no session", evs)
	}
	checkSession := func(want string) {
		t.Helper()
		got, err := api.GetSession(ctx, id)
		if err != nil || !sameSession(got, want) {
			t.Errorf("GetSession = %s, %v; want %s", got, err, want)
		}
	}
	checkSession("")
	for _, patch := range []string{`{"a":1}`, `{"b":{"c":2}}`, `{"b":{"d":3}}`} {
		if err := api.UpdateSession(ctx, id, json.RawMessage(patch)); err != nil {
			t.Fatalf("UpdateSession(%s): %v", patch, err)
		}
	}
	checkSession(`{"a":1,"b":{"c":2,"d":3}}`)
	if err := api.UpdateSession(ctx, id, json.RawMessage(`{"a":null,"b":{"c":null}}`)); err != nil {
		t.Fatalf("UpdateSession(delete): %v", err)
	}
	checkSession(`{"b":{"d":3}}`)
	// Concurrent updates of different fields: none is lost.
	var wg sync.WaitGroup
	want := map[string]any{"b": map[string]any{"d": float64(3)}}
	for i := range 20 {
		field := fmt.Sprintf("f%02d", i)
		want[field] = float64(i)
		wg.Go(func() {
			if err := api.UpdateSession(ctx, id, fmt.Appendf(nil, `{%q:%d}`, field, i)); err != nil {
				t.Errorf("UpdateSession(%s): %v", field, err)
			}
		})
	}
	wg.Wait()
	wantJSON, _ := json.Marshal(want)
	checkSession(string(wantJSON))
	// What is not a JSON object is refused and changes nothing.
	for _, bad := range []string{`[1]`, `"s"`, `nope`} {
		if err := api.SetSession(ctx, id, json.RawMessage(bad)); !errors.Is(err, worker.ErrInvalidArgument) {
			t.Errorf("SetSession(%s): %v, want ErrInvalidArgument", bad, err)
		}
		if err := api.UpdateSession(ctx, id, json.RawMessage(bad)); !errors.Is(err, worker.ErrInvalidArgument) {
			t.Errorf("UpdateSession(%s): %v, want ErrInvalidArgument", bad, err)
		}
	}
	checkSession(string(wantJSON))

	// The next event carries the session (and the uid).
	if err := api.BindUID(ctx, id, "u-sess"); err != nil {
		t.Fatalf("BindUID: %v", err)
	}
	cl.Send(t, "after update")
	linktest.Eventually(t, "the message", func() bool { return len(w.Rec.MessagesOf(id)) == 1 })
	evs := w.Rec.EventsOf(id)
	if e := evs[len(evs)-1]; e.Kind != linktest.EvMessage || e.Client.UID != "u-sess" || !sameSession(e.Client.Session, string(wantJSON)) {
		t.Errorf("message event: kind %s, uid %q, session %s; want message, u-sess, %s", e.Kind, e.Client.UID, e.Client.Session, wantJSON)
	}

	// SetSession replaces, nil clears.
	if err := api.SetSession(ctx, id, json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatalf("SetSession: %v", err)
	}
	checkSession(`{"x":1}`)
	if err := api.SetSession(ctx, id, nil); err != nil {
		t.Fatalf("SetSession(nil): %v", err)
	}
	checkSession("")
	if err := api.SetSession(ctx, id, json.RawMessage(`{"last":"yes"}`)); err != nil {
		t.Fatalf("SetSession: %v", err)
	}

	// OnClose carries the uid and the session the connection had.
	if err := cl.WS.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client close: %v", err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	evs = w.Rec.EventsOf(id)
	if e := evs[len(evs)-1]; e.Kind != linktest.EvClose || e.Client.UID != "u-sess" || !sameSession(e.Client.Session, `{"last":"yes"}`) {
		t.Errorf("last event: kind %s, uid %q, session %s; want close, u-sess, {\"last\":\"yes\"}", e.Kind, e.Client.UID, e.Client.Session)
	}
	if _, err := api.GetSession(ctx, id); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("GetSession of a closed client: %v, want ErrNotFound", err)
	}
	if err := api.UpdateSession(ctx, id, json.RawMessage(`{"a":1}`)); !errors.Is(err, worker.ErrNotFound) {
		t.Errorf("UpdateSession of a closed client: %v, want ErrNotFound", err)
	}
}

// sameSession compares a JSON text with want by value; "" stands for no
// session (nil).
func sameSession(got []byte, want string) bool {
	if len(got) == 0 || want == "" {
		return len(got) == 0 && want == ""
	}
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}
