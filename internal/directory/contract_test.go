package directory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatewire/gatewire/internal/clientid"
)

// Gateway ids used by the contract suite.
const (
	gwA = "00000000000000a1"
	gwB = "00000000000000b2"
	gwC = "00000000000000c3"
)

// cid returns client_id number seq of gateway gw.
func cid(gw string, seq uint64) string { return clientid.Make(gw, seq) }

// testContract runs the Directory contract against the directories newDir
// returns. Every call of newDir must return an empty directory of its own.
func testContract(t *testing.T, newDir func(t *testing.T) Directory) {
	t.Run("BindLookup", func(t *testing.T) {
		d := newDir(t)
		a1 := cid(gwA, 1)
		mustBind(t, d, a1, "alice")
		wantUID(t, d, a1, "alice")
		wantClientIDs(t, d, []string{"alice"}, map[string][]string{"alice": {a1}})
		wantEntries(t, d, gwA, map[string]string{a1: "alice"})
	})

	t.Run("MultiDevice", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1)
		for _, c := range []string{a1, a2, b1} {
			mustBind(t, d, c, "alice")
		}
		wantClientIDs(t, d, []string{"alice"}, map[string][]string{"alice": {a1, a2, b1}})
		for _, c := range []string{a1, a2, b1} {
			wantUID(t, d, c, "alice")
		}
		wantEntries(t, d, gwA, map[string]string{a1: "alice", a2: "alice"})
		wantEntries(t, d, gwB, map[string]string{b1: "alice"})
	})

	t.Run("UnbindRemovesOnlyThatConnection", func(t *testing.T) {
		d := newDir(t)
		a1, b1, a2 := cid(gwA, 1), cid(gwB, 1), cid(gwA, 2)
		mustBind(t, d, a1, "alice")
		mustBind(t, d, b1, "alice")
		mustBind(t, d, a2, "bob")
		mustUnbind(t, d, a1, "alice")
		wantUID(t, d, a1, "")
		wantUID(t, d, b1, "alice")
		wantUID(t, d, a2, "bob")
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"alice": {b1}, "bob": {a2}})
		wantEntries(t, d, gwA, map[string]string{a2: "bob"})

		mustUnbind(t, d, b1, "alice")
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"bob": {a2}})
		wantEntries(t, d, gwB, map[string]string{})
	})

	t.Run("UnbindMissing", func(t *testing.T) {
		d := newDir(t)
		a1, a2 := cid(gwA, 1), cid(gwA, 2)
		mustUnbind(t, d, a1, "alice") // never bound
		mustBind(t, d, a1, "alice")
		mustUnbind(t, d, a1, "alice")
		mustUnbind(t, d, a1, "alice") // twice
		wantUID(t, d, a1, "")

		// Unbinding a uid the connection is not bound to leaves its entry.
		mustBind(t, d, a2, "alice")
		mustUnbind(t, d, a2, "bob")
		wantUID(t, d, a2, "alice")
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"alice": {a2}})
		wantEntries(t, d, gwA, map[string]string{a2: "alice"})
	})

	t.Run("Rebind", func(t *testing.T) {
		d := newDir(t)
		a1 := cid(gwA, 1)
		mustBind(t, d, a1, "alice")
		mustUnbind(t, d, a1, "alice")
		mustBind(t, d, a1, "bob")
		wantUID(t, d, a1, "bob")
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"bob": {a1}})
		wantEntries(t, d, gwA, map[string]string{a1: "bob"})
	})

	t.Run("ClientIDsOfSeveralUIDs", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1, b2 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1), cid(gwB, 2)
		mustBind(t, d, a1, "alice")
		mustBind(t, d, b1, "alice")
		mustBind(t, d, a2, "bob")
		mustBind(t, d, b2, "carol")
		wantClientIDs(t, d, []string{"alice", "nobody", "bob", "alice", "ghost"},
			map[string][]string{"alice": {a1, b1}, "bob": {a2}})
		wantClientIDs(t, d, []string{"nobody"}, map[string][]string{})
		wantClientIDs(t, d, nil, map[string][]string{})
	})

	t.Run("UIDOfUnbound", func(t *testing.T) {
		d := newDir(t)
		mustBind(t, d, cid(gwA, 1), "alice")
		wantUID(t, d, cid(gwA, 2), "")
		wantUID(t, d, cid(gwC, 1), "")
	})

	t.Run("UIDZeroAndOddUIDs", func(t *testing.T) {
		d := newDir(t)
		uids := []string{"0", " ", "u:x", "{tag}", "名前", strings.Repeat("z", 300)}
		want := make(map[string][]string)
		for i, uid := range uids {
			c := cid(gwA, uint64(i+1))
			mustBind(t, d, c, uid)
			wantUID(t, d, c, uid)
			want[uid] = []string{c}
		}
		wantClientIDs(t, d, uids, want)
		mustUnbind(t, d, cid(gwA, 1), "0")
		wantUID(t, d, cid(gwA, 1), "")
		delete(want, "0")
		wantClientIDs(t, d, uids, want)
	})

	t.Run("Invalid", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		good := cid(gwA, 1)
		badCIDs := []string{"", "short", strings.Repeat("z", clientid.Len), good + "00", strings.ToUpper(good)[:clientid.Len-1]}
		for _, bad := range badCIDs {
			checkInvalid(t, "Bind "+bad, d.Bind(ctx, bad, "alice"))
			checkInvalid(t, "Unbind "+bad, d.Unbind(ctx, bad, "alice"))
			_, err := d.UID(ctx, bad)
			checkInvalid(t, "UID "+bad, err)
		}
		checkInvalid(t, "Bind empty uid", d.Bind(ctx, good, ""))
		checkInvalid(t, "Unbind empty uid", d.Unbind(ctx, good, ""))
		_, err := d.ClientIDs(ctx, "alice", "")
		checkInvalid(t, "ClientIDs empty uid", err)
		for _, bad := range []string{"", "xyz", good, "zzzzzzzzzzzzzzzz"} {
			_, err = d.PurgeGateway(ctx, bad)
			checkInvalid(t, "PurgeGateway "+bad, err)
			_, err = d.GatewayEntries(ctx, bad)
			checkInvalid(t, "GatewayEntries "+bad, err)
		}
		// Nothing was written.
		wantClientIDs(t, d, []string{"alice"}, map[string][]string{})
		wantUID(t, d, good, "")
		wantEntries(t, d, gwA, map[string]string{})
	})

	t.Run("PurgeGateway", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1, b2 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1), cid(gwB, 2)
		mustBind(t, d, a1, "alice")
		mustBind(t, d, b1, "alice")
		mustBind(t, d, a2, "bob")
		mustBind(t, d, b2, "carol")

		got, err := d.PurgeGateway(t.Context(), gwA)
		if err != nil {
			t.Fatalf("PurgeGateway(%s): %v", gwA, err)
		}
		if want := map[string]string{a1: "alice", a2: "bob"}; !maps.Equal(got, want) {
			t.Errorf("PurgeGateway(%s) = %v, want %v", gwA, got, want)
		}
		wantClientIDs(t, d, []string{"alice", "bob", "carol"},
			map[string][]string{"alice": {b1}, "carol": {b2}})
		wantUID(t, d, a1, "")
		wantUID(t, d, a2, "")
		wantUID(t, d, b1, "alice")
		wantEntries(t, d, gwA, map[string]string{})
		wantEntries(t, d, gwB, map[string]string{b1: "alice", b2: "carol"})

		// Purging again, or purging a gateway without entries, is fine.
		for _, gw := range []string{gwA, gwC} {
			got, err := d.PurgeGateway(t.Context(), gw)
			if err != nil || len(got) != 0 {
				t.Errorf("PurgeGateway(%s) = %v, %v; want no entries, nil", gw, got, err)
			}
		}
	})

	t.Run("PurgeManyEntries", func(t *testing.T) {
		d := newDir(t)
		const n = 2500 // more than one page of the Redis implementation
		want := make(map[string]string, n)
		for i := range n {
			c, uid := cid(gwA, uint64(i)), fmt.Sprintf("u%d", i%7)
			mustBind(t, d, c, uid)
			want[c] = uid
		}
		mustBind(t, d, cid(gwB, 1), "u1")
		wantEntries(t, d, gwA, want)
		got, err := d.PurgeGateway(t.Context(), gwA)
		if err != nil {
			t.Fatalf("PurgeGateway(%s): %v", gwA, err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("PurgeGateway(%s) returned %d entries, want %d", gwA, len(got), len(want))
		}
		wantClientIDs(t, d, []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6"},
			map[string][]string{"u1": {cid(gwB, 1)}})
		wantEntries(t, d, gwA, map[string]string{})
	})

	t.Run("GatewayEntries", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1)
		wantEntries(t, d, gwA, map[string]string{})
		mustBind(t, d, a1, "alice")
		mustBind(t, d, a2, "0")
		mustBind(t, d, b1, "alice")
		wantEntries(t, d, gwA, map[string]string{a1: "alice", a2: "0"})
		wantEntries(t, d, gwB, map[string]string{b1: "alice"})
		mustUnbind(t, d, a2, "0")
		wantEntries(t, d, gwA, map[string]string{a1: "alice"})
		wantEntries(t, d, gwC, map[string]string{})
	})

	t.Run("Live", func(t *testing.T) {
		inner := newDir(t)
		var mu sync.Mutex
		dead := map[string]bool{gwB: true}
		isLive := func(gw string) bool {
			mu.Lock()
			defer mu.Unlock()
			return !dead[gw]
		}
		d := Live(inner, isLive)
		a1, b1, b2 := cid(gwA, 1), cid(gwB, 1), cid(gwB, 2)
		mustBind(t, d, a1, "alice") // writes pass through
		mustBind(t, d, b1, "alice")
		mustBind(t, d, b2, "bob") // all of bob's connections are on a dead gateway

		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"alice": {a1}})
		wantUID(t, d, a1, "alice")
		wantUID(t, d, b1, "")
		wantUID(t, d, b2, "")
		_, err := d.UID(t.Context(), "bad")
		checkInvalid(t, "Live UID bad", err)
		_, err = d.ClientIDs(t.Context(), "")
		checkInvalid(t, "Live ClientIDs empty uid", err)

		// The entries are hidden, not gone.
		wantClientIDs(t, inner, []string{"alice", "bob"}, map[string][]string{"alice": {a1, b1}, "bob": {b2}})
		wantUID(t, inner, b2, "bob")
		wantEntries(t, d, gwB, map[string]string{b1: "alice", b2: "bob"})

		mu.Lock()
		delete(dead, gwB)
		dead[gwA] = true
		mu.Unlock()
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"alice": {b1}, "bob": {b2}})
		wantUID(t, d, a1, "")
		wantUID(t, d, b2, "bob")

		got, err := d.PurgeGateway(t.Context(), gwA)
		if want := map[string]string{a1: "alice"}; err != nil || !maps.Equal(got, want) {
			t.Errorf("Live PurgeGateway(%s) = %v, %v; want %v, nil", gwA, got, err, want)
		}
		mustUnbind(t, d, b2, "bob")
		wantClientIDs(t, inner, []string{"alice", "bob"}, map[string][]string{"alice": {b1}})
	})

	t.Run("CanceledContext", func(t *testing.T) {
		d := newDir(t)
		a1 := cid(gwA, 1)
		mustBind(t, d, a1, "alice")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		checkCanceled(t, "Bind", d.Bind(ctx, cid(gwA, 2), "alice"))
		checkCanceled(t, "Unbind", d.Unbind(ctx, a1, "alice"))
		_, err := d.ClientIDs(ctx, "alice")
		checkCanceled(t, "ClientIDs", err)
		_, err = d.UID(ctx, a1)
		checkCanceled(t, "UID", err)
		_, err = d.GatewayEntries(ctx, gwA)
		checkCanceled(t, "GatewayEntries", err)
		_, err = d.PurgeGateway(ctx, gwA)
		checkCanceled(t, "PurgeGateway", err)
		wantEntries(t, d, gwA, map[string]string{a1: "alice"})
	})

	t.Run("Concurrent", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		const (
			workers = 16
			perConn = 40
			nUIDs   = 5
		)
		// Worker w owns the connections cid(gw(w), w*perConn+i); uids are
		// shared between workers, so their sets are written concurrently.
		gw := func(w int) string { return []string{gwA, gwB}[w%2] }
		uidOf := func(i int) string { return fmt.Sprint(i % nUIDs) }
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range perConn {
					c := cid(gw(w), uint64(w*perConn+i))
					if err := d.Bind(ctx, c, uidOf(i)); err != nil {
						t.Errorf("Bind(%s, %s): %v", c, uidOf(i), err)
						return
					}
					if i%3 == 0 {
						if err := d.Unbind(ctx, c, uidOf(i)); err != nil {
							t.Errorf("Unbind(%s, %s): %v", c, uidOf(i), err)
							return
						}
					}
					if _, err := d.ClientIDs(ctx, uidOf(i), uidOf(i+1)); err != nil {
						t.Errorf("ClientIDs: %v", err)
						return
					}
					if _, err := d.UID(ctx, c); err != nil {
						t.Errorf("UID(%s): %v", c, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		wantIDs := make(map[string][]string)
		wantGW := map[string]map[string]string{gwA: {}, gwB: {}}
		for w := range workers {
			for i := range perConn {
				if i%3 == 0 {
					continue
				}
				c := cid(gw(w), uint64(w*perConn+i))
				wantIDs[uidOf(i)] = append(wantIDs[uidOf(i)], c)
				wantGW[gw(w)][c] = uidOf(i)
			}
		}
		uids := make([]string, nUIDs)
		for i := range uids {
			uids[i] = uidOf(i)
		}
		wantClientIDs(t, d, uids, wantIDs)
		wantEntries(t, d, gwA, wantGW[gwA])
		wantEntries(t, d, gwB, wantGW[gwB])
	})
}

func mustBind(t *testing.T, d Directory, clientID, uid string) {
	t.Helper()
	if err := d.Bind(t.Context(), clientID, uid); err != nil {
		t.Fatalf("Bind(%s, %q): %v", clientID, uid, err)
	}
}

func mustUnbind(t *testing.T, d Directory, clientID, uid string) {
	t.Helper()
	if err := d.Unbind(t.Context(), clientID, uid); err != nil {
		t.Fatalf("Unbind(%s, %q): %v", clientID, uid, err)
	}
}

func wantUID(t *testing.T, d Directory, clientID, want string) {
	t.Helper()
	got, err := d.UID(t.Context(), clientID)
	if err != nil {
		t.Fatalf("UID(%s): %v", clientID, err)
	}
	if got != want {
		t.Errorf("UID(%s) = %q, want %q", clientID, got, want)
	}
}

// wantClientIDs checks ClientIDs(uids...) against want, ignoring the order
// of client_ids.
func wantClientIDs(t *testing.T, d Directory, uids []string, want map[string][]string) {
	t.Helper()
	got, err := d.ClientIDs(t.Context(), uids...)
	if err != nil {
		t.Fatalf("ClientIDs(%q): %v", uids, err)
	}
	if got == nil {
		t.Errorf("ClientIDs(%q) = nil map, want a non-nil map", uids)
	}
	norm := func(m map[string][]string) map[string][]string {
		out := make(map[string][]string, len(m))
		for k, v := range m {
			out[k] = slices.Sorted(slices.Values(v))
		}
		return out
	}
	if g, w := norm(got), norm(want); !maps.EqualFunc(g, w, slices.Equal) {
		t.Errorf("ClientIDs(%q) = %v, want %v", uids, g, w)
	}
}

func wantEntries(t *testing.T, d Directory, gatewayID string, want map[string]string) {
	t.Helper()
	got, err := d.GatewayEntries(t.Context(), gatewayID)
	if err != nil {
		t.Fatalf("GatewayEntries(%s): %v", gatewayID, err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("GatewayEntries(%s) = %v, want %v", gatewayID, got, want)
	}
}

func checkInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("%s: error %v, want one wrapping ErrInvalid", what, err)
	}
}

func checkCanceled(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s with a canceled context: error %v, want one wrapping context.Canceled", what, err)
	}
}
