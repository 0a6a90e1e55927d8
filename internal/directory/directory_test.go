package directory

import (
	"context"
	"fmt"
	"maps"
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

// TestMemoryForgets checks that Memory keeps nothing once the last entry
// and membership are gone, whether removed one by one or purged.
func TestMemoryForgets(t *testing.T) {
	m := NewMemory()
	a1, a2, b1 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1)
	mustBind(t, m, a1, "alice")
	mustBind(t, m, b1, "bob")
	mustJoin(t, m, a1, "room")
	mustJoin(t, m, a2, "room")
	mustJoin(t, m, b1, "room")
	mustJoin(t, m, b1, "0")

	mustUnbind(t, m, a1, "alice")
	mustLeave(t, m, a1, "room")
	mustLeave(t, m, a2, "room")
	if _, err := m.PurgeGateway(t.Context(), gwB); err != nil {
		t.Fatal(err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.uids)+len(m.gateways)+len(m.groups)+len(m.memberships) != 0 {
		t.Errorf("Memory kept uids %v, gateways %v, groups %v, memberships %v", m.uids, m.gateways, m.groups, m.memberships)
	}
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

// TestRedisCluster runs the contract on a Redis Cluster of three masters:
// no command or pipeline may touch keys of two slots at once (CROSSSLOT).
func TestRedisCluster(t *testing.T) {
	client := testsvc.RedisClusterClient(t)
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

	mustJoin(t, d, a1, "room")
	mustJoin(t, d, b1, "room")
	mustJoin(t, d, b1, "0")
	mustJoin(t, other, cid(gwA, 9), "room")
	if got, err := client.SMembers(ctx, "one:gr:room").Result(); err != nil || !slices.Equal(slices.Sorted(slices.Values(got)), []string{a1, b1}) {
		t.Errorf("SMEMBERS one:gr:room = %v, %v; want [%s %s]", got, err, a1, b1)
	}
	wantHash := map[string]string{"room\x00" + b1: "1", "0\x00" + b1: "1"}
	if got, err := client.HGetAll(ctx, "one:gm:"+gwB).Result(); err != nil || !maps.Equal(got, wantHash) {
		t.Errorf("HGETALL one:gm:%s = %q, %v; want %q", gwB, got, err, wantHash)
	}
	wantMembers(t, d, []string{"room"}, map[string][]string{"room": {a1, b1}})
	wantMembers(t, other, []string{"room"}, map[string][]string{"room": {cid(gwA, 9)}})

	mustUnbind(t, d, a1, "alice")
	mustLeave(t, d, a1, "room")
	if _, err := d.PurgeGateway(ctx, gwB); err != nil {
		t.Fatal(err)
	}
	if keys, err := client.Keys(ctx, "one:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left under one: = %v, %v; want none", keys, err)
	}
	want := []string{"two:g:" + gwA, "two:gm:" + gwA, "two:gr:room", "two:u:alice"}
	if keys, err := client.Keys(ctx, "two:*").Result(); err != nil || !slices.Equal(slices.Sorted(slices.Values(keys)), want) {
		t.Errorf("keys under two: = %v, %v; want %v", keys, err, want)
	}
}

// TestRedisPurgeForeignFields checks that PurgeGateway deletes a field of a
// memberships hash it cannot parse instead of failing or keeping it.
func TestRedisPurgeForeignFields(t *testing.T) {
	ctx := t.Context()
	client := newRedisClient(t, testsvc.Redis(t))
	prefix := testPrefix(t)
	d := NewRedis(client, prefix)
	a1 := cid(gwA, 1)
	mustJoin(t, d, a1, "room")
	key := prefix + "gm:" + gwA
	for _, f := range []string{"junk", "room\x00short", "room" + a1, "\x00" + a1, "x\x00" + strings.ToUpper(a1)[:30] + "zz"} {
		if err := client.HSet(ctx, key, f, "1").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.PurgeGateway(ctx, gwA); err != nil {
		t.Fatalf("PurgeGateway: %v", err)
	}
	wantMembers(t, d, []string{"room"}, map[string][]string{})
	if keys, err := client.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left = %v, %v; want none", keys, err)
	}
}

func TestParseMembershipField(t *testing.T) {
	a1 := cid(gwA, 1)
	tests := []struct {
		field, group, clientID string
		ok                     bool
	}{
		{membershipField("room", a1), "room", a1, true},
		{membershipField("0", a1), "0", a1, true},
		{membershipField("a\x00b", a1), "a\x00b", a1, true},
		{membershipField("\x00", a1), "\x00", a1, true},
		{"\x00" + a1, "", "", false}, // empty group
		{"room" + a1, "", "", false}, // no separator
		{"room\x00" + a1[1:], "", "", false},
		{"room\x00" + a1[:31] + "z", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		g, c, ok := parseMembershipField(tt.field)
		if g != tt.group || c != tt.clientID || ok != tt.ok {
			t.Errorf("parseMembershipField(%q) = %q, %q, %v; want %q, %q, %v", tt.field, g, c, ok, tt.group, tt.clientID, tt.ok)
		}
	}
}

// TestRedisRoundTrips checks the round trips of each operation: plain
// pipelines (no MULTI, which Redis Cluster refuses across slots) or single
// commands, and a write's PUBLISH only after the write.
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
		{"Bind", func() error { return d.Bind(ctx, a1, "alice") }, "hset sadd | publish"},
		{"Bind2", func() error { return d.Bind(ctx, b1, "bob") }, "hset sadd | publish"},
		{"ClientIDs", func() error { _, err := d.ClientIDs(ctx, "alice", "bob", "carol", "alice"); return err }, "smembers smembers smembers"},
		{"UID", func() error { _, err := d.UID(ctx, a1); return err }, "hget"},
		{"Unbind", func() error { return d.Unbind(ctx, a1, "alice") }, "srem eval | publish"},
		{"GatewayEntries", func() error { _, err := d.GatewayEntries(ctx, gwB); return err }, "hscan"},
		{"JoinGroup", func() error { return d.JoinGroup(ctx, b1, "room") }, "hset sadd"},
		{"JoinGroup2", func() error { return d.JoinGroup(ctx, a1, "lobby") }, "hset sadd"},
		{"GroupMembers", func() error { _, err := d.GroupMembers(ctx, "room", "lobby", "hall", "room"); return err }, "smembers smembers smembers"},
		{"UIDs", func() error { _, err := d.UIDs(ctx, a1, b1, cid(gwA, 2), a1); return err }, "hmget hmget"},
		{"LeaveGroup", func() error { return d.LeaveGroup(ctx, a1, "lobby") }, "srem hdel"},
		{"PurgeGateway", func() error { _, err := d.PurgeGateway(ctx, gwB); return err }, "hscan | srem hdel | publish | hscan | srem hdel"},
		{"PurgeGatewayEmpty", func() error { _, err := d.PurgeGateway(ctx, gwC); return err }, "hscan | hscan"},
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
// the test ends; its connections carry name, if one is given.
func newRedisClient(t *testing.T, addr string, name ...string) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, ClientName: strings.Join(name, "")})
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
