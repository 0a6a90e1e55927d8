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
		for _, bad := range badCIDs {
			checkInvalid(t, "JoinGroup "+bad, d.JoinGroup(ctx, bad, "room"))
			checkInvalid(t, "LeaveGroup "+bad, d.LeaveGroup(ctx, bad, "room"))
			_, err := d.UIDs(ctx, good, bad)
			checkInvalid(t, "UIDs "+bad, err)
		}
		checkInvalid(t, "JoinGroup empty group", d.JoinGroup(ctx, good, ""))
		checkInvalid(t, "LeaveGroup empty group", d.LeaveGroup(ctx, good, ""))
		_, err = d.GroupMembers(ctx, "room", "")
		checkInvalid(t, "GroupMembers empty group", err)
		// Nothing was written.
		wantClientIDs(t, d, []string{"alice"}, map[string][]string{})
		wantUID(t, d, good, "")
		wantEntries(t, d, gwA, map[string]string{})
		wantMembers(t, d, []string{"room"}, map[string][]string{})
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
		// Every connection is in two of five groups; so is one of gwB's.
		groups := []string{"g0", "g1", "g2", "g3", "g4"}
		for i := range n {
			mustJoin(t, d, cid(gwA, uint64(i)), groups[i%5])
			mustJoin(t, d, cid(gwA, uint64(i)), groups[(i+1)%5])
		}
		mustJoin(t, d, cid(gwB, 1), "g0")
		mustJoin(t, d, cid(gwB, 1), "g3")
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
		wantMembers(t, d, groups, map[string][]string{"g0": {cid(gwB, 1)}, "g3": {cid(gwB, 1)}})
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

	t.Run("Groups", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1, c1 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1), cid(gwC, 1)
		wantMembers(t, d, []string{"room"}, map[string][]string{})
		mustJoin(t, d, a1, "room")
		mustJoin(t, d, b1, "room")
		mustJoin(t, d, a2, "lobby")
		mustJoin(t, d, c1, "other")
		wantMembers(t, d, []string{"room"}, map[string][]string{"room": {a1, b1}})
		// Several groups in one call, unknown and repeated ones among them.
		wantMembers(t, d, []string{"room", "nowhere", "lobby", "room", "ghost"},
			map[string][]string{"room": {a1, b1}, "lobby": {a2}})
		wantMembers(t, d, []string{"nowhere"}, map[string][]string{})
		wantMembers(t, d, nil, map[string][]string{})

		mustLeave(t, d, a1, "room")
		wantMembers(t, d, []string{"room", "lobby", "other"},
			map[string][]string{"room": {b1}, "lobby": {a2}, "other": {c1}})
		mustLeave(t, d, b1, "room") // the group's last member
		wantMembers(t, d, []string{"room", "lobby", "other"},
			map[string][]string{"lobby": {a2}, "other": {c1}})

		// Membership is independent of binding.
		wantUID(t, d, a2, "")
		wantClientIDs(t, d, []string{"lobby"}, map[string][]string{})
		wantEntries(t, d, gwA, map[string]string{})
	})

	t.Run("JoinIdempotent", func(t *testing.T) {
		d := newDir(t)
		a1 := cid(gwA, 1)
		mustJoin(t, d, a1, "room")
		mustJoin(t, d, a1, "room")
		mustJoin(t, d, a1, "room")
		wantMembers(t, d, []string{"room"}, map[string][]string{"room": {a1}})
		// One leave undoes any number of joins.
		mustLeave(t, d, a1, "room")
		wantMembers(t, d, []string{"room"}, map[string][]string{})
	})

	t.Run("LeaveMissing", func(t *testing.T) {
		d := newDir(t)
		a1, a2 := cid(gwA, 1), cid(gwA, 2)
		mustLeave(t, d, a1, "room") // never joined, group never existed
		mustJoin(t, d, a2, "room")
		mustLeave(t, d, a1, "room") // group exists, a1 is not in it
		mustLeave(t, d, a2, "lobby")
		wantMembers(t, d, []string{"room", "lobby"}, map[string][]string{"room": {a2}})
		mustLeave(t, d, a2, "room")
		mustLeave(t, d, a2, "room") // twice
		wantMembers(t, d, []string{"room", "lobby"}, map[string][]string{})
	})

	t.Run("SeveralGroupsPerConnection", func(t *testing.T) {
		d := newDir(t)
		a1, b1 := cid(gwA, 1), cid(gwB, 1)
		groups := []string{"g1", "g2", "g3"}
		for _, g := range groups {
			mustJoin(t, d, a1, g)
		}
		mustJoin(t, d, b1, "g2")
		wantMembers(t, d, groups, map[string][]string{"g1": {a1}, "g2": {a1, b1}, "g3": {a1}})
		mustLeave(t, d, a1, "g2")
		wantMembers(t, d, groups, map[string][]string{"g1": {a1}, "g2": {b1}, "g3": {a1}})
	})

	t.Run("GroupZeroAndOddGroups", func(t *testing.T) {
		d := newDir(t)
		// Names that look like keys, tags, separators or numbers are plain
		// names; "\x00" is the Redis field separator.
		groups := []string{"0", " ", "gr:x", "u:x", "{tag}", "a\x00b", "\x00", "名前", strings.Repeat("z", 300)}
		want := make(map[string][]string)
		for i, g := range groups {
			c := cid(gwA, uint64(i+1))
			mustJoin(t, d, c, g)
			mustJoin(t, d, cid(gwB, 1), g)
			want[g] = []string{c, cid(gwB, 1)}
		}
		wantMembers(t, d, groups, want)
		wantMembers(t, d, []string{"0"}, map[string][]string{"0": {cid(gwA, 1), cid(gwB, 1)}})
		mustLeave(t, d, cid(gwA, 1), "0")
		mustLeave(t, d, cid(gwB, 1), "0")
		delete(want, "0")
		wantMembers(t, d, groups, want)
		// A purge finds every one of them again.
		if _, err := d.PurgeGateway(t.Context(), gwB); err != nil {
			t.Fatalf("PurgeGateway(%s): %v", gwB, err)
		}
		for i, g := range groups[1:] {
			want[g] = []string{cid(gwA, uint64(i+2))}
		}
		wantMembers(t, d, groups, want)
	})

	t.Run("UIDs", func(t *testing.T) {
		d := newDir(t)
		a1, a2, a3, b1, b2, c1 := cid(gwA, 1), cid(gwA, 2), cid(gwA, 3), cid(gwB, 1), cid(gwB, 2), cid(gwC, 1)
		mustBind(t, d, a1, "alice")
		mustBind(t, d, a2, "0")
		mustBind(t, d, b1, "alice")
		mustJoin(t, d, a3, "room") // a member, but not bound
		wantUIDs(t, d, []string{a1}, map[string]string{a1: "alice"})
		wantUIDs(t, d, []string{a3, b2, c1}, map[string]string{})
		// Bound and unbound, on several gateways, in any order, repeated.
		wantUIDs(t, d, []string{c1, b1, a1, a3, a2, b2, a1, b1},
			map[string]string{a1: "alice", a2: "0", b1: "alice"})
		wantUIDs(t, d, nil, map[string]string{})
		mustUnbind(t, d, a1, "alice")
		mustBind(t, d, a1, "bob")
		wantUIDs(t, d, []string{a1, b1}, map[string]string{a1: "bob", b1: "alice"})
	})

	t.Run("PurgeGatewayGroups", func(t *testing.T) {
		d := newDir(t)
		a1, a2, b1, b2 := cid(gwA, 1), cid(gwA, 2), cid(gwB, 1), cid(gwB, 2)
		mustBind(t, d, a1, "alice")
		mustBind(t, d, b1, "bob")
		for _, c := range []string{a1, a2, b1} {
			mustJoin(t, d, c, "room")
		}
		mustJoin(t, d, a2, "lobby") // only gwA's connections
		mustJoin(t, d, a1, "lobby")
		mustJoin(t, d, b2, "hall") // only gwB's

		got, err := d.PurgeGateway(t.Context(), gwA)
		if err != nil {
			t.Fatalf("PurgeGateway(%s): %v", gwA, err)
		}
		// It still returns the uid entries only: a2 is a member, not bound.
		if want := map[string]string{a1: "alice"}; !maps.Equal(got, want) {
			t.Errorf("PurgeGateway(%s) = %v, want %v", gwA, got, want)
		}
		wantMembers(t, d, []string{"room", "lobby", "hall"},
			map[string][]string{"room": {b1}, "hall": {b2}})
		wantClientIDs(t, d, []string{"alice", "bob"}, map[string][]string{"bob": {b1}})

		// The purged gateway's connections can join again (a gateway wrongly
		// declared dead re-publishes), and a second purge finds them.
		mustJoin(t, d, a2, "room")
		wantMembers(t, d, []string{"room"}, map[string][]string{"room": {a2, b1}})
		if got, err := d.PurgeGateway(t.Context(), gwA); err != nil || len(got) != 0 {
			t.Errorf("PurgeGateway(%s) again = %v, %v; want no entries, nil", gwA, got, err)
		}
		wantMembers(t, d, []string{"room", "lobby", "hall"},
			map[string][]string{"room": {b1}, "hall": {b2}})
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

	t.Run("LiveGroups", func(t *testing.T) {
		inner := newDir(t)
		var mu sync.Mutex
		dead := map[string]bool{gwB: true}
		isLive := func(gw string) bool {
			mu.Lock()
			defer mu.Unlock()
			return !dead[gw]
		}
		d := Live(inner, isLive)
		a1, b1, b2, c1 := cid(gwA, 1), cid(gwB, 1), cid(gwB, 2), cid(gwC, 1)
		mustJoin(t, d, a1, "room") // writes pass through
		mustJoin(t, d, b1, "room")
		mustJoin(t, d, b2, "lobby") // every member of lobby is on a dead gateway
		mustJoin(t, d, c1, "hall")
		mustBind(t, d, a1, "alice")
		mustBind(t, d, b1, "bob")

		groups := []string{"room", "lobby", "hall"}
		wantMembers(t, d, groups, map[string][]string{"room": {a1}, "hall": {c1}})
		wantUIDs(t, d, []string{a1, b1, b2, c1}, map[string]string{a1: "alice"})
		_, err := d.GroupMembers(t.Context(), "")
		checkInvalid(t, "Live GroupMembers empty group", err)
		_, err = d.UIDs(t.Context(), a1, "bad")
		checkInvalid(t, "Live UIDs bad", err)

		// The members are hidden, not gone.
		wantMembers(t, inner, groups, map[string][]string{"room": {a1, b1}, "lobby": {b2}, "hall": {c1}})
		wantUIDs(t, inner, []string{a1, b1}, map[string]string{a1: "alice", b1: "bob"})

		mu.Lock()
		delete(dead, gwB)
		dead[gwA] = true
		mu.Unlock()
		wantMembers(t, d, groups, map[string][]string{"room": {b1}, "lobby": {b2}, "hall": {c1}})
		wantUIDs(t, d, []string{a1, b1, b2, c1}, map[string]string{b1: "bob"})

		mustLeave(t, d, b2, "lobby")
		wantMembers(t, inner, groups, map[string][]string{"room": {a1, b1}, "hall": {c1}})
		if _, err := d.PurgeGateway(t.Context(), gwA); err != nil {
			t.Fatalf("Live PurgeGateway(%s): %v", gwA, err)
		}
		wantMembers(t, inner, groups, map[string][]string{"room": {b1}, "hall": {c1}})
	})

	t.Run("CanceledContext", func(t *testing.T) {
		d := newDir(t)
		a1 := cid(gwA, 1)
		mustBind(t, d, a1, "alice")
		mustJoin(t, d, a1, "room")
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
		checkCanceled(t, "JoinGroup", d.JoinGroup(ctx, a1, "lobby"))
		checkCanceled(t, "LeaveGroup", d.LeaveGroup(ctx, a1, "room"))
		_, err = d.GroupMembers(ctx, "room")
		checkCanceled(t, "GroupMembers", err)
		_, err = d.UIDs(ctx, a1)
		checkCanceled(t, "UIDs", err)
		_, err = d.PurgeGateway(ctx, gwA)
		checkCanceled(t, "PurgeGateway", err)
		wantEntries(t, d, gwA, map[string]string{a1: "alice"})
		wantMembers(t, d, []string{"room", "lobby"}, map[string][]string{"room": {a1}})
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

	t.Run("ConcurrentGroups", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		const (
			workers = 16
			perConn = 30
			nGroups = 4
		)
		// Worker w owns the connections cid(gw(w), w*perConn+i) and joins
		// each to two of the shared groups, then leaves one of them again
		// for every third connection; it reads while the others write.
		gw := func(w int) string { return []string{gwA, gwB, gwC}[w%3] }
		groupOf := func(i int) string { return fmt.Sprint("g", i%nGroups) }
		groups := make([]string, nGroups)
		for i := range groups {
			groups[i] = groupOf(i)
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range perConn {
					c := cid(gw(w), uint64(w*perConn+i))
					for _, g := range []string{groupOf(i), groupOf(i + 1)} {
						if err := d.JoinGroup(ctx, c, g); err != nil {
							t.Errorf("JoinGroup(%s, %s): %v", c, g, err)
							return
						}
					}
					if i%3 == 0 {
						if err := d.LeaveGroup(ctx, c, groupOf(i+1)); err != nil {
							t.Errorf("LeaveGroup(%s, %s): %v", c, groupOf(i+1), err)
							return
						}
					}
					if i%2 == 0 {
						if err := d.Bind(ctx, c, "u"); err != nil {
							t.Errorf("Bind(%s): %v", c, err)
							return
						}
					}
					if _, err := d.GroupMembers(ctx, groups...); err != nil {
						t.Errorf("GroupMembers: %v", err)
						return
					}
					if _, err := d.UIDs(ctx, c, cid(gw(w+1), uint64(i))); err != nil {
						t.Errorf("UIDs: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		want := make(map[string][]string)
		var all []string
		wantU := make(map[string]string)
		for w := range workers {
			for i := range perConn {
				c := cid(gw(w), uint64(w*perConn+i))
				all = append(all, c)
				want[groupOf(i)] = append(want[groupOf(i)], c)
				if i%3 != 0 {
					want[groupOf(i+1)] = append(want[groupOf(i+1)], c)
				}
				if i%2 == 0 {
					wantU[c] = "u"
				}
			}
		}
		wantMembers(t, d, groups, want)
		wantUIDs(t, d, all, wantU)
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
	if g, w := sortedSets(got), sortedSets(want); !maps.EqualFunc(g, w, slices.Equal) {
		t.Errorf("ClientIDs(%q) = %v, want %v", uids, g, w)
	}
}

func mustJoin(t *testing.T, d Directory, clientID, group string) {
	t.Helper()
	if err := d.JoinGroup(t.Context(), clientID, group); err != nil {
		t.Fatalf("JoinGroup(%s, %q): %v", clientID, group, err)
	}
}

func mustLeave(t *testing.T, d Directory, clientID, group string) {
	t.Helper()
	if err := d.LeaveGroup(t.Context(), clientID, group); err != nil {
		t.Fatalf("LeaveGroup(%s, %q): %v", clientID, group, err)
	}
}

// wantMembers checks GroupMembers(groups...) against want, ignoring the
// order of client_ids.
func wantMembers(t *testing.T, d Directory, groups []string, want map[string][]string) {
	t.Helper()
	got, err := d.GroupMembers(t.Context(), groups...)
	if err != nil {
		t.Fatalf("GroupMembers(%q): %v", groups, err)
	}
	if got == nil {
		t.Errorf("GroupMembers(%q) = nil map, want a non-nil map", groups)
	}
	if g, w := sortedSets(got), sortedSets(want); !maps.EqualFunc(g, w, slices.Equal) {
		t.Errorf("GroupMembers(%q) = %q, want %q", groups, g, w)
	}
}

func wantUIDs(t *testing.T, d Directory, clientIDs []string, want map[string]string) {
	t.Helper()
	got, err := d.UIDs(t.Context(), clientIDs...)
	if err != nil {
		t.Fatalf("UIDs(%q): %v", clientIDs, err)
	}
	if got == nil {
		t.Errorf("UIDs(%q) = nil map, want a non-nil map", clientIDs)
	}
	if !maps.Equal(got, want) {
		t.Errorf("UIDs(%q) = %v, want %v", clientIDs, got, want)
	}
}

// sortedSets returns a copy of m with each value sorted.
func sortedSets(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Sorted(slices.Values(v))
	}
	return out
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
