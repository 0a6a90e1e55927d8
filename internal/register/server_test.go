package register

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gatewire/gatewire/internal/bearer"
	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/testsvc"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

const secret = "test-secret"

// waitTimeout bounds every wait for something the register does on its own;
// it is far longer than any lease used here, so a slow machine only slows
// the tests down.
const waitTimeout = 15 * time.Second

// shortLease makes leases lapse quickly in the tests that wait for a lapse.
var shortLease = ServerConfig{Lease: 300 * time.Millisecond}

// longLease is far longer than any test: a gateway that vanishes under it
// has left, not lapsed.
var longLease = ServerConfig{Lease: time.Hour}

// tableKinds runs test once on a MemoryTable and once on a RedisTable.
// clear deletes every lease behind the server's back.
func tableKinds(t *testing.T, test func(t *testing.T, table Table, clear func())) {
	t.Run("memory", func(t *testing.T) {
		table := NewMemoryTable()
		test(t, table, func() {
			for _, l := range mustList(t, table) {
				mustRemove(t, table, l.Gateway.GetId(), true)
			}
		})
	})
	t.Run("redis", func(t *testing.T) {
		rdb := newRedisClient(t, testsvc.Redis(t))
		prefix := testPrefix(t)
		test(t, NewRedisTable(rdb, prefix), func() {
			if err := rdb.Del(t.Context(), prefix+"gateways").Err(); err != nil {
				t.Fatalf("delete the lease hash: %v", err)
			}
		})
	})
}

// TestAnnounceAndLeave checks that an announced gateway shows up in Watch
// with its addresses, and is gone, with its lease and directory entries, as
// soon as Announce's context ends, while other gateways keep theirs.
func TestAnnounceAndLeave(t *testing.T) {
	tableKinds(t, func(t *testing.T, table Table, _ func()) {
		dir := directory.NewMemory()
		srv := startServer(t, longLease, table, dir)
		ep := serve(t, srv)
		gw := newGateway()
		other := newGateway() // stays announced throughout
		bind(t, dir, gw.GetId(), other.GetId())

		w := startWatch(t, newClient(t, ep.addr))
		c := newClient(t, ep.addr)
		announce(t, c, other, nil)
		w.waitFor(t, "the other gateway to appear", func(l []*registerv1.Gateway) bool { return hasGateway(l, other) })
		leave := announce(t, c, gw, nil)
		w.waitFor(t, "both gateways to appear", func(l []*registerv1.Gateway) bool {
			return len(l) == 2 && hasGateway(l, gw) && hasGateway(l, other)
		})
		// A watch started now gets the whole list in its first message.
		late := startWatch(t, newClient(t, ep.addr))
		if first := late.first(t); len(first) != 2 || !hasGateway(first, gw) || !hasGateway(first, other) {
			t.Errorf("first list of a new watch = %v, want both gateways", first)
		}

		leave() // returns once the register has answered the leave
		wantEntries(t, dir, gw.GetId(), nil)
		wantEntries(t, dir, other.GetId(), map[string]string{clientid.Make(other.GetId(), 1): "user-" + other.GetId()})
		if got := mustList(t, table); len(got) != 1 || got[0].Gateway.GetId() != other.GetId() {
			t.Errorf("leases after leaving = %s, want only %s", formatLeases(got), other.GetId())
		}
		// The lease lasts an hour: only the leave can have removed it.
		w.waitFor(t, "the gateway to leave the list", func(l []*registerv1.Gateway) bool {
			return len(l) == 1 && hasGateway(l, other)
		})
	})
}

// TestHeartbeatsKeepLease checks that a gateway that heartbeats keeps its
// lease well beyond its length: it never drops out of the list and its
// entries stay.
func TestHeartbeatsKeepLease(t *testing.T) {
	tableKinds(t, func(t *testing.T, table Table, _ func()) {
		dir := directory.NewMemory()
		srv := startServer(t, shortLease, table, dir)
		ep := serve(t, srv)
		gw := newGateway()
		bind(t, dir, gw.GetId())

		w := startWatch(t, newClient(t, ep.addr))
		var fresh atomic.Int32
		announce(t, newClient(t, ep.addr), gw, func(context.Context) { fresh.Add(1) })
		w.waitFor(t, "the gateway to appear", func(l []*registerv1.Gateway) bool { return hasGateway(l, gw) })
		start := time.Now()
		eventually(t, "renewals covering five leases", func() bool {
			l := leaseOf(t, table, gw.GetId())
			return l != nil && l.Expires.After(start.Add(5*shortLease.Lease))
		})

		if lists := w.since(gw); slices.ContainsFunc(lists, func(l []*registerv1.Gateway) bool { return !hasGateway(l, gw) }) {
			t.Errorf("the heartbeating gateway dropped out of the list: %v", lists)
		}
		wantEntries(t, dir, gw.GetId(), map[string]string{clientid.Make(gw.GetId(), 1): "user-" + gw.GetId()})
		if n := fresh.Load(); n != 0 {
			t.Errorf("onFresh ran %d times while the lease was kept, want 0", n)
		}
	})
}

// TestLapse checks that a gateway that stops heartbeating without leaving
// loses its lease: it vanishes from Watch and its entries are purged, while
// other gateways keep theirs.
func TestLapse(t *testing.T) {
	tests := []struct {
		name string
		// start keeps gw announced at ep until the returned func is called,
		// which stops heartbeats without leaving.
		start func(t *testing.T, ep *endpoint, table Table, gw *registerv1.Gateway) (stop func())
	}{
		{"AnnounceStreamCancelled", func(t *testing.T, ep *endpoint, _ Table, gw *registerv1.Gateway) func() {
			ctx, cancel := context.WithCancel(t.Context())
			stream, err := registerv1.NewRegisterServiceClient(dial(t, ep.addr)).Announce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&registerv1.AnnounceRequest{Gateway: gw}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if !resp.GetFresh() || resp.GetLeaseMillis() != uint32(shortLease.Lease.Milliseconds()) || resp.GetHeartbeatMillis() != uint32(shortLease.Lease.Milliseconds()/5) {
				t.Errorf("first AnnounceResponse = %v, want fresh, lease %v, heartbeat lease/5", resp, shortLease.Lease)
			}
			return cancel
		}},
		{"RegisterKilled", func(t *testing.T, ep *endpoint, table Table, gw *registerv1.Gateway) func() {
			// The gateway talks to a second endpoint of the same server,
			// whose death cuts it off: it keeps retrying there in vain.
			own := serve(t, ep.srv)
			announce(t, newClient(t, own.addr), gw, nil)
			eventually(t, "the gateway to announce", func() bool { return leaseOf(t, table, gw.GetId()) != nil })
			return own.kill
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tableKinds(t, func(t *testing.T, table Table, _ func()) {
				dir := directory.NewMemory()
				srv := startServer(t, shortLease, table, dir)
				ep := serve(t, srv)
				gw, other := newGateway(), newGateway()
				bind(t, dir, gw.GetId(), other.GetId())

				w := startWatch(t, newClient(t, ep.addr))
				announce(t, newClient(t, ep.addr), other, nil)
				stop := tt.start(t, ep, table, gw)
				w.waitFor(t, "both gateways to appear", func(l []*registerv1.Gateway) bool {
					return hasGateway(l, gw) && hasGateway(l, other)
				})
				wantEntries(t, dir, gw.GetId(), map[string]string{clientid.Make(gw.GetId(), 1): "user-" + gw.GetId()})

				stop()
				w.waitFor(t, "the silent gateway to vanish", func(l []*registerv1.Gateway) bool {
					return len(l) == 1 && hasGateway(l, other)
				})
				eventually(t, "the silent gateway's entries to be purged", func() bool {
					return len(entries(t, dir, gw.GetId())) == 0
				})
				if l := leaseOf(t, table, gw.GetId()); l != nil {
					t.Errorf("the silent gateway still has a lease: %v", l)
				}
				wantEntries(t, dir, other.GetId(), map[string]string{clientid.Make(other.GetId(), 1): "user-" + other.GetId()})
			})
		})
	}
}

// TestOnFresh checks that Client.Announce calls onFresh when the table has
// lost the lease of a gateway that keeps heartbeating, and not on the first
// announce nor on ordinary renewals.
func TestOnFresh(t *testing.T) {
	tableKinds(t, func(t *testing.T, table Table, clear func()) {
		srv := startServer(t, shortLease, table, directory.NewMemory())
		ep := serve(t, srv)
		gw := newGateway()

		var (
			fresh  atomic.Int32
			ctxErr = make(chan error, 10)
		)
		announce(t, newClient(t, ep.addr), gw, func(ctx context.Context) {
			fresh.Add(1)
			select {
			case ctxErr <- ctx.Err():
			default:
			}
		})
		eventually(t, "the gateway to announce", func() bool { return leaseOf(t, table, gw.GetId()) != nil })
		first := leaseOf(t, table, gw.GetId()).Expires
		eventually(t, "a renewal", func() bool {
			l := leaseOf(t, table, gw.GetId())
			return l != nil && l.Expires.After(first)
		})
		if n := fresh.Load(); n != 0 {
			t.Fatalf("onFresh ran %d times before the lease was lost, want 0", n)
		}

		clear()
		eventually(t, "onFresh after the lease was lost", func() bool { return fresh.Load() > 0 })
		if err := <-ctxErr; err != nil {
			t.Errorf("onFresh got a context that is already done: %v", err)
		}
		eventually(t, "the lease to be back", func() bool { return leaseOf(t, table, gw.GetId()) != nil })
	})
}

// TestInvalidAnnounce checks that malformed announcements are refused with
// InvalidArgument and leave no lease behind.
func TestInvalidAnnounce(t *testing.T) {
	table := NewMemoryTable()
	ep := serve(t, startServer(t, longLease, table, directory.NewMemory()))
	client := registerv1.NewRegisterServiceClient(dial(t, ep.addr))
	good := newGateway()
	withID := func(id string) *registerv1.Gateway {
		return &registerv1.Gateway{Id: id, LinkAddress: good.GetLinkAddress()}
	}
	withLink := func(link string) *registerv1.Gateway {
		return &registerv1.Gateway{Id: good.GetId(), LinkAddress: link}
	}
	tests := []struct {
		name string
		reqs []*registerv1.AnnounceRequest
	}{
		{"NoGateway", []*registerv1.AnnounceRequest{{}}},
		{"EmptyID", []*registerv1.AnnounceRequest{{Gateway: withID("")}}},
		{"ShortID", []*registerv1.AnnounceRequest{{Gateway: withID("00000000000000a")}}},
		{"LongID", []*registerv1.AnnounceRequest{{Gateway: withID("00000000000000a1f")}}},
		{"NonHexID", []*registerv1.AnnounceRequest{{Gateway: withID("00000000000000zz")}}},
		{"ClientIDAsID", []*registerv1.AnnounceRequest{{Gateway: withID(clientid.Make(good.GetId(), 1))}}},
		{"EmptyLinkAddress", []*registerv1.AnnounceRequest{{Gateway: withLink("")}}},
		{"LinkAddressWithoutPort", []*registerv1.AnnounceRequest{{Gateway: withLink("127.0.0.1")}}},
		{"LinkAddressTooManyColons", []*registerv1.AnnounceRequest{{Gateway: withLink("::1:7000")}}},
		{"LeavingWithInvalidID", []*registerv1.AnnounceRequest{{Gateway: withID("nope"), Leaving: true}}},
		{"IDChangedMidStream", []*registerv1.AnnounceRequest{{Gateway: good}, {Gateway: newGateway()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			stream, err := client.Announce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, req := range tt.reqs {
				if err := stream.Send(req); err != nil {
					t.Fatalf("send request %d: %v", i, err)
				}
				_, err = stream.Recv()
				if i < len(tt.reqs)-1 && err != nil {
					t.Fatalf("request %d: %v, want an answer", i, err)
				}
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("Announce answered %v, want code InvalidArgument", err)
			}
			cancel()
			for _, l := range mustList(t, table) {
				if l.Gateway.GetId() != good.GetId() { // IDChangedMidStream's first request was valid
					t.Errorf("refused announcement left a lease: %v", l.Gateway)
				}
			}
		})
	}
}

// TestAuthentication checks that both RPCs refuse calls without the shared
// secret.
func TestAuthentication(t *testing.T) {
	table := NewMemoryTable()
	ep := serve(t, startServer(t, longLease, table, directory.NewMemory()))
	tests := []struct {
		name  string
		creds []grpc.DialOption
	}{
		{"NoToken", nil},
		{"WrongToken", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials("wrong-secret"))}},
		{"EmptyToken", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(""))}},
		{"SecretPrefix", []grpc.DialOption{grpc.WithPerRPCCredentials(bearer.Credentials(secret[:len(secret)-1]))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			cc, err := grpc.NewClient(ep.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, tt.creds...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := registerv1.NewRegisterServiceClient(cc)

			announce, err := client.Announce(ctx)
			if err == nil {
				_ = announce.Send(&registerv1.AnnounceRequest{Gateway: newGateway()}) // may fail: the answer is in Recv
				_, err = announce.Recv()
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("Announce: %v, want code Unauthenticated", err)
			}
			watch, err := client.Watch(ctx, &registerv1.WatchRequest{})
			if err == nil {
				_, err = watch.Recv()
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("Watch: %v, want code Unauthenticated", err)
			}
		})
	}
	if got := mustList(t, table); len(got) != 0 {
		t.Errorf("unauthenticated announcements left leases: %s", formatLeases(got))
	}

	// The right secret is let through.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	watch, err := registerv1.NewRegisterServiceClient(dial(t, ep.addr)).Watch(ctx, &registerv1.WatchRequest{})
	if err == nil {
		_, err = watch.Recv()
	}
	if err != nil {
		t.Errorf("Watch with the secret: %v", err)
	}
}

// TestReplicas checks that register replicas sharing a RedisTable serve
// one cluster: what a gateway does at one replica shows at the other, and a
// lapsed lease is purged exactly once.
func TestReplicas(t *testing.T) {
	addr := testsvc.Redis(t)
	prefix := testPrefix(t)
	dir := &countingPurger{Purger: directory.NewMemory()}
	a := serve(t, startServer(t, shortLease, NewRedisTable(newRedisClient(t, addr), prefix), dir))
	b := serve(t, startServer(t, shortLease, NewRedisTable(newRedisClient(t, addr), prefix), dir))
	wa, wb := startWatch(t, newClient(t, a.addr)), startWatch(t, newClient(t, b.addr))

	leaver, silent := newGateway(), newGateway()
	leave := announce(t, newClient(t, a.addr), leaver, nil)
	wb.waitFor(t, "a gateway announced at A to show at B", func(l []*registerv1.Gateway) bool { return hasGateway(l, leaver) })

	// silent announces at B, then stops heartbeating.
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := registerv1.NewRegisterServiceClient(dial(t, b.addr)).Announce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&registerv1.AnnounceRequest{Gateway: silent}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*watcher{wa, wb} {
		w.waitFor(t, "a gateway announced at B to show at both replicas", func(l []*registerv1.Gateway) bool { return hasGateway(l, silent) })
	}
	cancel()
	for _, w := range []*watcher{wa, wb} {
		w.waitFor(t, "the silent gateway to vanish at both replicas", func(l []*registerv1.Gateway) bool {
			return len(l) == 1 && hasGateway(l, leaver)
		})
	}
	eventually(t, "the silent gateway to be purged", func() bool { return dir.count(silent.GetId()) > 0 })
	// Both replicas have refreshed past the lapse and the lease is gone:
	// neither may purge again.
	if n := dir.count(silent.GetId()); n != 1 {
		t.Errorf("the lapsed gateway was purged %d times, want exactly once", n)
	}

	leave()
	for _, w := range []*watcher{wa, wb} {
		w.waitFor(t, "the leaver to vanish at both replicas", func(l []*registerv1.Gateway) bool { return len(l) == 0 })
	}
	if n := dir.count(leaver.GetId()); n != 1 {
		t.Errorf("the gateway that left was purged %d times, want exactly once", n)
	}
}

// TestFailover checks that a Client whose first register replica dies goes
// on with the next one, for Announce (the lease is renewed through it and
// never lost) and for Watch (changes keep arriving).
func TestFailover(t *testing.T) {
	table := NewMemoryTable()
	cfg := ServerConfig{Lease: 5 * time.Second}
	dir := &countingPurger{Purger: directory.NewMemory()}
	a := serve(t, startServer(t, cfg, table, dir))
	b := serve(t, startServer(t, cfg, table, dir))
	w := startWatch(t, newClient(t, a.addr, b.addr))

	gw := newGateway()
	var fresh atomic.Int32
	announce(t, newClient(t, a.addr, b.addr), gw, func(context.Context) { fresh.Add(1) })
	w.waitFor(t, "the gateway to appear", func(l []*registerv1.Gateway) bool { return hasGateway(l, gw) })

	a.kill()
	killed := time.Now()
	eventually(t, "a renewal through replica B", func() bool {
		l := leaseOf(t, table, gw.GetId())
		return l != nil && l.Expires.After(killed.Add(cfg.Lease))
	})
	if n := dir.count(gw.GetId()); n != 0 {
		t.Errorf("the failing-over gateway was purged %d times, want 0", n)
	}
	if n := fresh.Load(); n != 0 {
		t.Errorf("onFresh ran %d times though the shared table kept the lease, want 0", n)
	}

	late := newGateway()
	announce(t, newClient(t, b.addr), late, nil)
	w.waitFor(t, "the watch to fail over and see a new gateway", func(l []*registerv1.Gateway) bool {
		return hasGateway(l, gw) && hasGateway(l, late)
	})
}

// startServer returns a Server whose Run runs until the test ends.
func startServer(t *testing.T, cfg ServerConfig, table Table, purge Purger) *Server {
	t.Helper()
	srv, err := NewServer(cfg, table, purge, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

// endpoint is one gRPC server on a loopback port serving a Server.
type endpoint struct {
	srv  *Server
	addr string
	kill func()
}

// serve serves srv with bearer authentication on a fresh loopback port
// until kill is called or the test ends.
func serve(t *testing.T, srv *Server) *endpoint {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(bearer.ServerOptions(secret)...)
	registerv1.RegisterRegisterServiceServer(gs, srv)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	var once sync.Once
	kill := func() {
		once.Do(func() {
			gs.Stop()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(kill)
	return &endpoint{srv: srv, addr: lis.Addr().String(), kill: kill}
}

// dial returns a connection to addr carrying the secret, closed when the
// test ends.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, clientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func clientOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer.Credentials(secret)),
	}
}

// newClient returns a Client of the replicas at addrs, closed when the test
// ends.
func newClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := NewClient(addrs, nil, clientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return c
}

// announce runs c.Announce for gw until the returned func is called or the
// test ends; the func returns once Announce has.
func announce(t *testing.T, c *Client, gw *registerv1.Gateway, onFresh func(context.Context)) (leave func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Announce(ctx, gw, 2*time.Second, onFresh)
	}()
	leave = func() {
		cancel()
		<-done
	}
	t.Cleanup(leave)
	return leave
}

// watcher records every list a Client.Watch delivers.
type watcher struct {
	mu    sync.Mutex
	lists [][]*registerv1.Gateway
}

// startWatch runs c.Watch until the test ends.
func startWatch(t *testing.T, c *Client) *watcher {
	w := &watcher{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, func(l []*registerv1.Gateway) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.lists = append(w.lists, l)
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// waitFor waits until the latest list satisfies cond.
func (w *watcher) waitFor(t *testing.T, what string, cond func([]*registerv1.Gateway) bool) {
	t.Helper()
	eventually(t, what, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.lists) > 0 && cond(w.lists[len(w.lists)-1])
	})
}

// first waits for the first list and returns it.
func (w *watcher) first(t *testing.T) []*registerv1.Gateway {
	t.Helper()
	eventually(t, "a first list", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.lists) > 0
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lists[0]
}

// since returns the lists received from the first one that holds gw on.
func (w *watcher) since(gw *registerv1.Gateway) [][]*registerv1.Gateway {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, l := range w.lists {
		if hasGateway(l, gw) {
			return slices.Clone(w.lists[i:])
		}
	}
	return nil
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var portSeq atomic.Int32

// newGateway returns a gateway with a fresh id and distinct addresses.
func newGateway() *registerv1.Gateway {
	return gateway(clientid.NewGatewayID(), 20000+int(portSeq.Add(1)))
}

func hasGateway(list []*registerv1.Gateway, gw *registerv1.Gateway) bool {
	return slices.ContainsFunc(list, func(g *registerv1.Gateway) bool { return proto.Equal(g, gw) })
}

// leaseOf returns gateway id's lease in table, nil if it has none.
func leaseOf(t *testing.T, table Table, id string) *Lease {
	t.Helper()
	for _, l := range mustList(t, table) {
		if l.Gateway.GetId() == id {
			return &l
		}
	}
	return nil
}

// bind binds connection 1 of each gateway to "user-<gateway id>".
func bind(t *testing.T, dir directory.Directory, gatewayIDs ...string) {
	t.Helper()
	for _, id := range gatewayIDs {
		if err := dir.Bind(t.Context(), clientid.Make(id, 1), "user-"+id); err != nil {
			t.Fatal(err)
		}
	}
}

func entries(t *testing.T, dir directory.Directory, gatewayID string) map[string]string {
	t.Helper()
	got, err := dir.GatewayEntries(t.Context(), gatewayID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantEntries(t *testing.T, dir directory.Directory, gatewayID string, want map[string]string) {
	t.Helper()
	got := entries(t, dir, gatewayID)
	if len(got) != len(want) {
		t.Errorf("entries of %s = %v, want %v", gatewayID, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("entries of %s = %v, want %v", gatewayID, got, want)
			return
		}
	}
}

// countingPurger counts the purges of each gateway.
type countingPurger struct {
	Purger
	mu     sync.Mutex
	counts map[string]int
}

func (p *countingPurger) PurgeGateway(ctx context.Context, id string) (map[string]string, error) {
	p.mu.Lock()
	if p.counts == nil {
		p.counts = make(map[string]int)
	}
	p.counts[id]++
	p.mu.Unlock()
	return p.Purger.PurgeGateway(ctx, id)
}

func (p *countingPurger) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[id]
}

// TestRepublishAfterLapseSurvivesPurge checks that the entries a gateway
// re-publishes when a renewal answers fresh (its lease lapsed and was
// expired) are not wiped by the purge of its lapsed lease still in
// progress: otherwise the gateway is live but unreachable by uid, and is
// never told fresh again.
func TestRepublishAfterLapseSurvivesPurge(t *testing.T) {
	table := NewMemoryTable()
	dir := directory.NewMemory()
	purger := &blockingPurger{Purger: dir, entered: make(chan struct{}), release: make(chan struct{})}
	// The lease is long; the test makes it lapse by writing it into the
	// table with an expiry in the past, without the grace a register that
	// just started gives lapsed leases, and Run polls often.
	ep := serve(t, startServer(t, ServerConfig{Lease: time.Hour, Poll: 20 * time.Millisecond, StartGrace: -1}, table, purger))
	t.Cleanup(purger.unblock) // before Run is stopped, even if the test fails early
	gw := newGateway()
	cid := clientid.Make(gw.GetId(), 1)
	bind(t, dir, gw.GetId())
	mustRenew(t, table, gw, time.Now().Add(-time.Second))

	select {
	case <-purger.entered: // Run expired the lease and is purging
	case <-time.After(waitTimeout):
		t.Fatal("the lapsed lease was not purged")
	}
	// The gateway comes back now: while the purge runs it is refused, so
	// that what it re-publishes cannot be purged with the old entries.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	client := registerv1.NewRegisterServiceClient(dial(t, ep.addr))
	announce := func() (*registerv1.AnnounceResponse, error) {
		stream, err := client.Announce(ctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&registerv1.AnnounceRequest{Gateway: gw}); err != nil {
			return nil, err
		}
		return stream.Recv()
	}
	if _, err := announce(); status.Code(err) != codes.Unavailable {
		t.Fatalf("announce during the purge: err = %v, want Unavailable", err)
	}
	purger.unblock()
	eventually(t, "the purge to finish", func() bool { return purger.finished.Load() })
	// Now the gateway is told fresh and re-publishes; the entries stay.
	var resp *registerv1.AnnounceResponse
	eventually(t, "the gateway to be accepted again", func() bool {
		var err error
		resp, err = announce()
		return err == nil
	})
	if !resp.GetFresh() {
		t.Fatal("renewal after the purge: fresh = false, want true")
	}
	if err := dir.Bind(ctx, cid, "user-"+gw.GetId()); err != nil {
		t.Fatal(err)
	}

	if leaseOf(t, table, gw.GetId()) == nil {
		t.Fatal("the renewed gateway has no lease")
	}
	wantEntries(t, dir, gw.GetId(), map[string]string{cid: "user-" + gw.GetId()})
}

// blockingPurger holds its first purge until release is closed.
type blockingPurger struct {
	Purger
	once     sync.Once
	entered  chan struct{} // closed when the first purge starts
	release  chan struct{} // closed by unblock
	finished atomic.Bool   // set when the first purge has returned
	unblockO sync.Once
}

// unblock lets the first purge proceed.
func (p *blockingPurger) unblock() { p.unblockO.Do(func() { close(p.release) }) }

func (p *blockingPurger) PurgeGateway(ctx context.Context, id string) (map[string]string, error) {
	first := false
	p.once.Do(func() { first = true })
	if !first {
		return p.Purger.PurgeGateway(ctx, id)
	}
	close(p.entered)
	<-p.release
	defer p.finished.Store(true)
	return p.Purger.PurgeGateway(context.WithoutCancel(ctx), id)
}

// TestGraceAfterStart checks that a register that starts treats the leases
// that lapsed before it ran — while no register could renew them — as live
// for one lease: a gateway that renews in that time stays live throughout
// and keeps its directory entries, and one that does not is dropped and
// purged, but not before a lease has passed since the start.
func TestGraceAfterStart(t *testing.T) {
	tableKinds(t, func(t *testing.T, table Table, _ func()) {
		cfg := ServerConfig{Lease: 2 * time.Second}
		dir := directory.NewMemory()
		back, gone := newGateway(), newGateway()
		lapsed := time.Now().Add(-time.Millisecond)
		for _, gw := range []*registerv1.Gateway{back, gone} {
			if _, err := table.Renew(t.Context(), gw, lapsed); err != nil {
				t.Fatal(err)
			}
		}
		bind(t, dir, back.GetId(), gone.GetId())

		started := time.Now()
		srv := startServer(t, cfg, table, dir)
		ep := serve(t, srv)
		w := startWatch(t, newClient(t, ep.addr))
		w.waitFor(t, "both lapsed gateways to be live", func(l []*registerv1.Gateway) bool {
			return hasGateway(l, back) && hasGateway(l, gone)
		})
		announce(t, newClient(t, ep.addr), back, nil)
		w.waitFor(t, "the gateway that did not renew to vanish", func(l []*registerv1.Gateway) bool {
			return len(l) == 1 && hasGateway(l, back)
		})
		if d := time.Since(started); d < cfg.Lease {
			t.Errorf("the gateway that did not renew vanished %v after the start, within the grace of one lease (%v)", d, cfg.Lease)
		}
		eventually(t, "its entries to be purged", func() bool { return len(entries(t, dir, gone.GetId())) == 0 })
		for _, l := range w.since(back) {
			if !hasGateway(l, back) {
				t.Errorf("the gateway that renewed in the grace was dropped: list %v", l)
			}
		}
		wantEntries(t, dir, back.GetId(), map[string]string{clientid.Make(back.GetId(), 1): "user-" + back.GetId()})
	})
}
