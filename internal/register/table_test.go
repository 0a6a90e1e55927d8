package register

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/gatewire/gatewire/internal/testsvc"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Gateway ids used by the table tests, listed in sorted order.
const (
	gwA = "00000000000000a1"
	gwB = "00000000000000b2"
	gwC = "00000000000000c3"
)

// gateway returns a valid Gateway with id and addresses derived from port.
func gateway(id string, port int) *registerv1.Gateway {
	return &registerv1.Gateway{
		Id:            id,
		LinkAddress:   fmt.Sprintf("127.0.0.1:%d", port),
		PublicAddress: fmt.Sprintf("127.0.0.1:%d", port+1000),
	}
}

// msNow returns the current time truncated to the millisecond, the
// resolution every Table keeps.
func msNow() time.Time { return time.UnixMilli(time.Now().UnixMilli()) }

func TestMemoryTable(t *testing.T) {
	testTable(t, func(*testing.T) Table { return NewMemoryTable() })
}

func TestRedisTable(t *testing.T) {
	rdb := newRedisClient(t, testsvc.Redis(t))
	testTable(t, func(t *testing.T) Table { return NewRedisTable(rdb, testPrefix(t)) })
}

// TestRedisClusterTable runs the contract on a Redis Cluster of three
// masters: no command may touch keys of two slots at once (CROSSSLOT).
func TestRedisClusterTable(t *testing.T) {
	rdb := testsvc.RedisClusterClient(t)
	testTable(t, func(t *testing.T) Table { return NewRedisTable(rdb, testPrefix(t)) })
}

// testTable runs the Table contract against the tables newTable returns.
// Every call of newTable must return an empty table of its own.
func testTable(t *testing.T, newTable func(t *testing.T) Table) {
	t.Run("RenewReportsFresh", func(t *testing.T) {
		ctx := t.Context()
		tbl := newTable(t)
		gw := gateway(gwA, 7001)
		now := time.Now()
		steps := []struct {
			name    string
			expires time.Time
			want    bool
		}{
			{"first renew", now.Add(time.Minute), true},
			{"renew of a live lease", now.Add(2 * time.Minute), false},
			{"renew of a live lease, setting it in the past", now.Add(-time.Minute), false},
			{"renew after the lease lapsed", now.Add(time.Minute), true},
			{"renew of the revived lease", now.Add(time.Minute), false},
		}
		for _, s := range steps {
			if got := mustRenew(t, tbl, gw, s.expires); got != s.want {
				t.Errorf("%s: Renew fresh = %v, want %v", s.name, got, s.want)
			}
		}
		if got := mustRenew(t, tbl, gateway(gwB, 7002), now.Add(time.Minute)); !got {
			t.Errorf("first renew of a second gateway: fresh = false, want true")
		}

		mustRemove(t, tbl, gwA, true)
		if got := mustRenew(t, tbl, gw, now.Add(time.Minute)); !got {
			t.Errorf("renew after Remove: fresh = false, want true")
		}
		mustRenew(t, tbl, gw, now.Add(-time.Minute))
		if removed, err := tbl.Expire(ctx, gwA, now, now.Add(time.Minute)); err != nil || !removed {
			t.Fatalf("Expire lapsed lease = %v, %v; want true", removed, err)
		}
		// While the tombstone is in force the gateway may not renew: what it
		// would re-publish could be purged with the old entries.
		if _, err := tbl.Renew(ctx, gw, now.Add(time.Minute)); !errors.Is(err, ErrPurging) {
			t.Errorf("renew during the purge: err = %v, want ErrPurging", err)
		}
		if err := tbl.Forget(ctx, gwA); err != nil {
			t.Fatal(err)
		}
		if got := mustRenew(t, tbl, gw, now.Add(time.Minute)); !got {
			t.Errorf("renew after the purge: fresh = false, want true")
		}
		// A tombstone whose purge was abandoned lapses like a lease.
		mustRenew(t, tbl, gw, now.Add(-time.Minute))
		if removed, err := tbl.Expire(ctx, gwA, now, now.Add(-time.Millisecond)); err != nil || !removed {
			t.Fatalf("Expire lapsed lease = %v, %v; want true", removed, err)
		}
		if got := mustRenew(t, tbl, gw, now.Add(time.Minute)); !got {
			t.Errorf("renew over a lapsed tombstone: fresh = false, want true")
		}
		// Forget leaves a live lease alone.
		if err := tbl.Forget(ctx, gwA); err != nil {
			t.Fatal(err)
		}
		if got := mustRenew(t, tbl, gw, now.Add(time.Minute)); got {
			t.Errorf("renew after Forget of a live lease: fresh = true, want false")
		}
	})

	t.Run("ListSortedWithFieldsAndExpiry", func(t *testing.T) {
		tbl := newTable(t)
		if got := mustList(t, tbl); len(got) != 0 {
			t.Fatalf("List of an empty table = %v, want none", got)
		}
		now := msNow()
		want := []Lease{
			{Gateway: gateway(gwA, 7001), Expires: now.Add(1500 * time.Millisecond)},
			{Gateway: &registerv1.Gateway{Id: gwB, LinkAddress: "[::1]:7002"}, Expires: now.Add(time.Hour)},
			{Gateway: gateway(gwC, 7003), Expires: now.Add(-time.Second)}, // lapsed: listed too
		}
		for _, i := range []int{2, 0, 1} {
			mustRenew(t, tbl, want[i].Gateway, want[i].Expires)
		}
		wantLeases(t, tbl, want)

		// A renewal replaces the addresses and the expiry.
		moved := gateway(gwA, 9001)
		want[0] = Lease{Gateway: moved, Expires: now.Add(2 * time.Hour)}
		mustRenew(t, tbl, moved, want[0].Expires)
		wantLeases(t, tbl, want)
	})

	t.Run("RemoveOnce", func(t *testing.T) {
		tbl := newTable(t)
		now := time.Now()
		mustRenew(t, tbl, gateway(gwA, 7001), now.Add(time.Minute))
		mustRenew(t, tbl, gateway(gwB, 7002), now.Add(-time.Minute))
		mustRemove(t, tbl, gwA, true)
		mustRemove(t, tbl, gwA, false)
		mustRemove(t, tbl, gwC, false)
		mustRemove(t, tbl, gwB, true) // lapsed leases are removed too
		if got := mustList(t, tbl); len(got) != 0 {
			t.Errorf("List after removing everything = %v, want none", got)
		}
	})

	t.Run("ExpireOnlyLapsed", func(t *testing.T) {
		ctx := t.Context()
		tbl := newTable(t)
		now := msNow()
		live := Lease{Gateway: gateway(gwA, 7001), Expires: now.Add(time.Minute)}
		edge := Lease{Gateway: gateway(gwB, 7002), Expires: now} // lapses after now, not before
		lapsed := Lease{Gateway: gateway(gwC, 7003), Expires: now.Add(-time.Millisecond)}
		for _, l := range []Lease{live, edge, lapsed} {
			mustRenew(t, tbl, l.Gateway, l.Expires)
		}
		tests := []struct {
			id   string
			want bool
		}{
			{gwA, false},                // live
			{gwB, false},                // expires exactly now
			{gwC, true},                 // lapsed
			{gwC, false},                // already gone
			{"00000000000000d4", false}, // never there
		}
		purgeUntil := now.Add(time.Minute)
		for _, tt := range tests {
			if got, err := tbl.Expire(ctx, tt.id, now, purgeUntil); err != nil || got != tt.want {
				t.Errorf("Expire(%s, now) = %v, %v; want %v", tt.id, got, err, tt.want)
			}
		}
		tomb := Lease{Gateway: lapsed.Gateway, Expires: purgeUntil, Purging: true}
		wantLeases(t, tbl, []Lease{live, edge, tomb})
		mustForget(t, tbl, gwC)
		wantLeases(t, tbl, []Lease{live, edge})

		// Once now has moved past them, both lapse.
		later := now.Add(2 * time.Minute)
		for _, id := range []string{gwA, gwB} {
			if got, err := tbl.Expire(ctx, id, later, later.Add(time.Minute)); err != nil || !got {
				t.Errorf("Expire(%s, now+2m) = %v, %v; want true", id, got, err)
			}
			mustForget(t, tbl, id)
		}
		wantLeases(t, tbl, nil)
	})

	// Several replicas race for every removal: exactly one must win it, so
	// that exactly one purges the gateway's entries.
	t.Run("ConcurrentExpireAndRemoveHaveOneWinner", func(t *testing.T) {
		tbl := newTable(t)
		ops := []struct {
			name string
			op   func(ctx context.Context, id string) (bool, error)
		}{
			{"Expire", func(ctx context.Context, id string) (bool, error) {
				return tbl.Expire(ctx, id, time.Now(), time.Now().Add(time.Minute))
			}},
			{"Remove", tbl.Remove},
		}
		for _, o := range ops {
			for round := range 5 {
				mustForget(t, tbl, gwA) // the previous round's tombstone
				mustRenew(t, tbl, gateway(gwA, 7001), time.Now().Add(-time.Second))
				if n := raceOp(t, 8, o.op, gwA); n != 1 {
					t.Fatalf("%s round %d: %d of 8 concurrent calls reported true, want exactly 1", o.name, round, n)
				}
			}
		}
	})

	t.Run("ConcurrentRenewHasOneFresh", func(t *testing.T) {
		tbl := newTable(t)
		renew := func(ctx context.Context, id string) (bool, error) {
			return tbl.Renew(ctx, gateway(id, 7001), time.Now().Add(time.Minute))
		}
		for round := range 5 {
			mustRemove(t, tbl, gwA, round > 0)
			if n := raceOp(t, 8, renew, gwA); n != 1 {
				t.Fatalf("round %d: %d of 8 concurrent first renewals reported fresh, want exactly 1", round, n)
			}
		}
	})
}

// TestRedisTableShared checks that RedisTables with the same prefix share
// their leases, as register replicas do, and that other prefixes are apart.
func TestRedisTableShared(t *testing.T) {
	ctx := t.Context()
	addr := testsvc.Redis(t)
	prefix := testPrefix(t)
	one := NewRedisTable(newRedisClient(t, addr), prefix)
	two := NewRedisTable(newRedisClient(t, addr), prefix)
	other := NewRedisTable(newRedisClient(t, addr), prefix+"other:")

	lease := Lease{Gateway: gateway(gwA, 7001), Expires: msNow().Add(time.Minute)}
	if !mustRenew(t, one, lease.Gateway, lease.Expires) {
		t.Fatal("first renew at replica one: fresh = false")
	}
	wantLeases(t, two, []Lease{lease})
	wantLeases(t, other, nil)
	if mustRenew(t, two, lease.Gateway, lease.Expires.Add(time.Second)) {
		t.Error("renew at replica two of the lease replica one holds: fresh = true, want false")
	}
	if mustRenew(t, other, lease.Gateway, lease.Expires) != true {
		t.Error("renew in another prefix: fresh = false, want true")
	}
	mustRemove(t, one, gwA, true)
	mustRemove(t, two, gwA, false)
	wantLeases(t, other, []Lease{lease})
	if keys, err := one.rdb.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 1 || keys[0] != prefix+"other:gateways" {
		t.Errorf("keys under %q = %v, %v; want only the other prefix's %q", prefix, keys, err, prefix+"other:gateways")
	}
}

// TestRedisTableUndecodable checks that a damaged entry is skipped by List
// and treated as lapsed by Renew and Expire.
func TestRedisTableUndecodable(t *testing.T) {
	ctx := t.Context()
	rdb := newRedisClient(t, testsvc.Redis(t))
	prefix := testPrefix(t)
	tbl := NewRedisTable(rdb, prefix)
	good := Lease{Gateway: gateway(gwA, 7001), Expires: msNow().Add(time.Minute)}
	mustRenew(t, tbl, good.Gateway, good.Expires)
	for _, id := range []string{gwB, gwC} {
		if err := rdb.HSet(ctx, prefix+"gateways", id, "{not json").Err(); err != nil {
			t.Fatal(err)
		}
	}
	wantLeases(t, tbl, []Lease{good})
	if removed, err := tbl.Expire(ctx, gwB, time.Now(), time.Now().Add(time.Minute)); err != nil || !removed {
		t.Errorf("Expire of an undecodable entry = %v, %v; want true", removed, err)
	}
	mustForget(t, tbl, gwB)
	if fresh := mustRenew(t, tbl, gateway(gwC, 7003), good.Expires); !fresh {
		t.Error("Renew over an undecodable entry: fresh = false, want true")
	}
	wantLeases(t, tbl, []Lease{good, {Gateway: gateway(gwC, 7003), Expires: good.Expires}})
}

// raceOp runs op(id) from n goroutines released together and returns how
// many reported true.
func raceOp(t *testing.T, n int, op func(context.Context, string) (bool, error), id string) int {
	t.Helper()
	ctx := t.Context()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		wins  atomic.Int32
		errs  = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			ok, err := op(ctx, id)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	return int(wins.Load())
}

func mustRenew(t *testing.T, tbl Table, gw *registerv1.Gateway, expires time.Time) bool {
	t.Helper()
	fresh, err := tbl.Renew(t.Context(), gw, expires)
	if err != nil {
		t.Fatalf("Renew(%s): %v", gw.GetId(), err)
	}
	return fresh
}

func mustForget(t *testing.T, tbl Table, id string) {
	t.Helper()
	if err := tbl.Forget(t.Context(), id); err != nil {
		t.Fatalf("Forget(%s): %v", id, err)
	}
}

func mustRemove(t *testing.T, tbl Table, id string, want bool) {
	t.Helper()
	got, err := tbl.Remove(t.Context(), id)
	if err != nil {
		t.Fatalf("Remove(%s): %v", id, err)
	}
	if got != want {
		t.Errorf("Remove(%s) = %v, want %v", id, got, want)
	}
}

func mustList(t *testing.T, tbl Table) []Lease {
	t.Helper()
	got, err := tbl.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return got
}

// wantLeases checks that List returns want, in order, with equal gateways
// and expiry times equal to the millisecond.
func wantLeases(t *testing.T, tbl Table, want []Lease) {
	t.Helper()
	got := mustList(t, tbl)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = proto.Equal(got[i].Gateway, want[i].Gateway) && got[i].Expires.UnixMilli() == want[i].Expires.UnixMilli() && got[i].Purging == want[i].Purging
	}
	if !ok {
		t.Errorf("List =\n%s\nwant\n%s", formatLeases(got), formatLeases(want))
	}
}

func formatLeases(ls []Lease) string {
	s := ""
	for _, l := range ls {
		s += fmt.Sprintf("  %s link=%q public=%q expires_ms=%d purging=%v\n", l.Gateway.GetId(), l.Gateway.GetLinkAddress(), l.Gateway.GetPublicAddress(), l.Expires.UnixMilli(), l.Purging)
	}
	if s == "" {
		return "  (none)"
	}
	return s
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
