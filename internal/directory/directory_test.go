package directory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gatewire/gatewire/internal/testsvc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemory(t *testing.T) {
	testContract(t, func(t *testing.T) Directory { return NewMemory() })
}

// TestLiveAllLive checks that Live, with every gateway live, is itself a
// Directory that keeps the contract.
func TestLiveAllLive(t *testing.T) {
	allLive := func(string) bool { return true }
	testContract(t, func(t *testing.T) Directory { return Live(NewMemory(), allLive) })
}

func TestRedis(t *testing.T) {
	client := newRedisClient(t, testsvc.Redis(t))
	testContract(t, func(t *testing.T) Directory { return NewRedis(client, testPrefix(t)) })
}

func TestRedisLiveAllLive(t *testing.T) {
	client := newRedisClient(t, testsvc.Redis(t))
	allLive := func(string) bool { return true }
	testContract(t, func(t *testing.T) Directory { return Live(NewRedis(client, testPrefix(t)), allLive) })
}

// TestRedisKeyLayout checks the documented key layout, that the prefix
// separates directories, and that no key outlives its last entry.
func TestRedisKeyLayout(t *testing.T) {
	ctx := t.Context()
	client := newRedisClient(t, testsvc.Redis(t))
	d := NewRedis(client, "one:")
	other := NewRedis(client, "two:")
	a1, b1 := cid(gwA, 1), cid(gwB, 1)
	mustBind(t, d, a1, "alice")
	mustBind(t, d, b1, "alice")
	mustBind(t, other, cid(gwA, 9), "alice")

	if got, err := client.SMembers(ctx, "one:u:alice").Result(); err != nil || !slices.Equal(slices.Sorted(slices.Values(got)), []string{a1, b1}) {
		t.Errorf("SMEMBERS one:u:alice = %v, %v; want [%s %s]", got, err, a1, b1)
	}
	if got, err := client.HGetAll(ctx, "one:g:"+gwA).Result(); err != nil || len(got) != 1 || got[a1] != "alice" {
		t.Errorf("HGETALL one:g:%s = %v, %v; want map[%s:alice]", gwA, got, err, a1)
	}
	wantClientIDs(t, d, []string{"alice"}, map[string][]string{"alice": {a1, b1}})
	wantClientIDs(t, other, []string{"alice"}, map[string][]string{"alice": {cid(gwA, 9)}})

	mustUnbind(t, d, a1, "alice")
	if _, err := d.PurgeGateway(ctx, gwB); err != nil {
		t.Fatal(err)
	}
	if keys, err := client.Keys(ctx, "one:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left under one: = %v, %v; want none", keys, err)
	}
	if keys, err := client.Keys(ctx, "two:*").Result(); err != nil || len(keys) != 2 {
		t.Errorf("keys under two: = %v, %v; want two:u:alice and two:g:%s", keys, err, gwA)
	}
}

// TestRedisRoundTrips checks that each operation is one plain pipeline (no
// MULTI, which Redis Cluster refuses across slots) or one command.
func TestRedisRoundTrips(t *testing.T) {
	ctx := t.Context()
	client := newRedisClient(t, testsvc.Redis(t))
	rec := &recorder{}
	client.AddHook(rec)
	d := NewRedis(client, testPrefix(t))
	a1, b1 := cid(gwA, 1), cid(gwB, 1)

	tests := []struct {
		name string
		op   func() error
		want string // the commands of each round trip, round trips separated by " | "
	}{
		{"Bind", func() error { return d.Bind(ctx, a1, "alice") }, "hset sadd"},
		{"Bind2", func() error { return d.Bind(ctx, b1, "bob") }, "hset sadd"},
		{"ClientIDs", func() error { _, err := d.ClientIDs(ctx, "alice", "bob", "carol", "alice"); return err }, "smembers smembers smembers"},
		{"UID", func() error { _, err := d.UID(ctx, a1); return err }, "hget"},
		{"Unbind", func() error { return d.Unbind(ctx, a1, "alice") }, "srem eval"},
		{"GatewayEntries", func() error { _, err := d.GatewayEntries(ctx, gwB); return err }, "hscan"},
		{"PurgeGateway", func() error { _, err := d.PurgeGateway(ctx, gwB); return err }, "hscan | srem hdel"},
	}
	for _, tt := range tests {
		rec.reset()
		if err := tt.op(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := rec.String(); got != tt.want {
			t.Errorf("%s sent %q, want %q", tt.name, got, tt.want)
		}
	}
}

// recorder is a go-redis hook that records the names of the commands of each
// round trip.
type recorder struct {
	mu    sync.Mutex
	trips []string
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.add(cmds)
		return next(ctx, cmds)
	}
}

// add records one round trip, leaving out the handshake go-redis runs on a
// new connection.
func (r *recorder) add(cmds []redis.Cmder) {
	var names []string
	for _, c := range cmds {
		switch name := c.Name(); name {
		case "hello", "client", "auth", "select":
		default:
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = append(r.trips, strings.Join(names, " "))
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.trips, " | ")
}

// newRedisClient returns a client of the Redis server at addr, closed when
// the test ends.
func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		if err := client.Close(); err != nil {
			t.Errorf("close redis client: %v", err)
		}
	})
	return client
}

var prefixSeq atomic.Int64

// testPrefix returns a key prefix no other test uses.
func testPrefix(t *testing.T) string {
	return fmt.Sprintf("test%d:%s:", prefixSeq.Add(1), t.Name())
}
