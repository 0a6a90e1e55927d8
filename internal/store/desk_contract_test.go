package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// The desk's part of the contract suite (registered in testStore).

// clock hands out increasing times, a millisecond apart, from a fixed start:
// tests decide the order of events, not the machine's clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)}
}

func (c *clock) tick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// deskAgents creates agent users and sets their presence.
func deskAgents(t *testing.T, s Store, clk *clock, presence map[string]Presence) {
	t.Helper()
	ctx := ctxT(t)
	var users []User
	for uid := range presence {
		users = append(users, User{UID: uid, Nickname: "Agent " + uid, Role: RoleAgent})
	}
	if err := s.UpsertUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	uids := make([]string, 0, len(presence))
	for uid := range presence {
		uids = append(uids, uid)
	}
	slices.Sort(uids) // deterministic last_assigned_at order does not depend on this
	for _, uid := range uids {
		if _, _, err := s.SetPresence(ctx, uid, presence[uid], clk.tick()); err != nil {
			t.Fatal(err)
		}
	}
}

func assign(t *testing.T, s Store, clk *clock, visitor string, maxOpen int) Assignment {
	t.Helper()
	a, err := s.Assign(ctxT(t), visitor, maxOpen, clk.tick())
	if err != nil {
		t.Fatalf("Assign(%s): %v", visitor, err)
	}
	return a
}

func wantAssigned(t *testing.T, a Assignment, visitor, agent string) {
	t.Helper()
	c := a.Conversation
	if !a.Assigned || c.Visitor != visitor || c.State != ConversationOpen || c.Agent != agent || c.LastAgent != agent || !c.QueuedAt.IsZero() {
		t.Fatalf("assignment of %s = %+v, want newly assigned to %s", visitor, a, agent)
	}
}

func wantQueued(t *testing.T, a Assignment, visitor string) {
	t.Helper()
	c := a.Conversation
	if a.Assigned || c.Visitor != visitor || c.State != ConversationQueued || c.Agent != "" || c.QueuedAt.IsZero() {
		t.Fatalf("assignment of %s = %+v, want queued", visitor, a)
	}
}

func conversation(t *testing.T, s Store, visitor string) Conversation {
	t.Helper()
	c, err := s.Conversation(ctxT(t), visitor)
	if err != nil {
		t.Fatalf("Conversation(%s): %v", visitor, err)
	}
	return c
}

func openCounts(t *testing.T, s Store) map[string]int {
	t.Helper()
	agents, err := s.Agents(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, a := range agents {
		out[a.UID] = a.Open
	}
	return out
}

func testDeskVisitor(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	if _, err := s.Conversation(ctx, "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Conversation of an unknown visitor = %v, want ErrNotFound", err)
	}
	t1 := clk.tick()
	c, err := s.TouchVisitor(ctx, "v1", VisitorInfo{PageURL: "https://shop.test/a", Referrer: "https://search.test/?q=x", UserAgent: "UA/1"}, t1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Visitor != "v1" || c.State != ConversationNew || c.Agent != "" || !c.FirstSeen.Equal(t1) || !c.LastSeen.Equal(t1) ||
		c.Info != (VisitorInfo{PageURL: "https://shop.test/a", Referrer: "https://search.test/?q=x", UserAgent: "UA/1"}) {
		t.Fatalf("new visitor = %+v", c)
	}
	// Later visits keep FirstSeen and the fields they do not report.
	t2 := clk.tick()
	c, err = s.TouchVisitor(ctx, "v1", VisitorInfo{PageURL: "https://shop.test/b", Email: "v@mail.test"}, t2)
	if err != nil {
		t.Fatal(err)
	}
	want := VisitorInfo{PageURL: "https://shop.test/b", Referrer: "https://search.test/?q=x", UserAgent: "UA/1", Email: "v@mail.test"}
	if !c.FirstSeen.Equal(t1) || !c.LastSeen.Equal(t2) || c.Info != want || c.State != ConversationNew {
		t.Fatalf("returning visitor = %+v", c)
	}
	if got := conversation(t, s, "v1"); got.Info != want || !got.FirstSeen.Equal(t1) {
		t.Fatalf("Conversation = %+v", got)
	}
	// Nobody wrote: the agents' list does not show it.
	if list, err := s.Conversations(ctx, ConversationFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("Conversations = %v, %v; want none", list, err)
	}
}

// testDeskAssignLeastLoaded: first messages go to the online agent with the
// fewest open conversations under the cap (ties: assigned least recently);
// away and offline agents get none; at the cap the conversation queues.
func testDeskAssignLeastLoaded(t *testing.T, s Store) {
	clk := newClock()
	deskAgents(t, s, clk, map[string]Presence{"a1": PresenceOnline, "a2": PresenceOnline, "a3": PresenceAway, "a4": PresenceOffline})
	const maxOpen = 2
	wantAssigned(t, assign(t, s, clk, "v1", maxOpen), "v1", "a1") // both empty, neither ever assigned: by uid
	wantAssigned(t, assign(t, s, clk, "v2", maxOpen), "v2", "a2") // a2 has fewer
	wantAssigned(t, assign(t, s, clk, "v3", maxOpen), "v3", "a1") // tie: a1 was assigned longer ago
	wantAssigned(t, assign(t, s, clk, "v4", maxOpen), "v4", "a2")
	// Already open: nothing changes.
	again := assign(t, s, clk, "v1", maxOpen)
	if again.Assigned || again.Conversation.Agent != "a1" || again.Conversation.State != ConversationOpen {
		t.Fatalf("second Assign of v1 = %+v, want still a1's, not newly assigned", again)
	}
	// Everyone online is at the cap: queued, and the queue keeps its order.
	q5 := assign(t, s, clk, "v5", maxOpen)
	wantQueued(t, q5, "v5")
	wantQueued(t, assign(t, s, clk, "v6", maxOpen), "v6")
	q5again := assign(t, s, clk, "v5", maxOpen)
	wantQueued(t, q5again, "v5")
	if !q5again.Conversation.QueuedAt.Equal(q5.Conversation.QueuedAt) {
		t.Fatalf("v5 lost its place: queued at %v, then %v", q5.Conversation.QueuedAt, q5again.Conversation.QueuedAt)
	}
	for v, want := range map[string]int{"v5": 1, "v6": 2, "v1": 0, "nobody": 0} {
		if got, err := s.QueuePosition(ctxT(t), v); err != nil || got != want {
			t.Errorf("QueuePosition(%s) = %d, %v; want %d", v, got, err, want)
		}
	}
	if got := openCounts(t, s); got["a1"] != 2 || got["a2"] != 2 || got["a3"] != 0 || got["a4"] != 0 {
		t.Fatalf("open counts %v", got)
	}
	// No cap: the least loaded gets it.
	wantAssigned(t, assign(t, s, clk, "v7", 0), "v7", "a1")
}

// testDeskReturningVisitor: a visitor whose conversation was closed goes
// back to their last agent when that agent is online and has room, even if
// another agent is less loaded; otherwise to the least loaded.
func testDeskReturningVisitor(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	deskAgents(t, s, clk, map[string]Presence{"a1": PresenceOnline, "a2": PresenceOnline})
	wantAssigned(t, assign(t, s, clk, "v1", 5), "v1", "a1")
	wantAssigned(t, assign(t, s, clk, "v2", 5), "v2", "a2")
	wantAssigned(t, assign(t, s, clk, "v3", 5), "v3", "a1")
	for _, v := range []string{"v1", "v3"} {
		if _, err := s.CloseConversation(ctx, v, "a1", clk.tick()); err != nil {
			t.Fatal(err)
		}
	}
	wantAssigned(t, assign(t, s, clk, "v4", 5), "v4", "a1") // a1 now has 0, a2 1
	c := conversation(t, s, "v1")
	if c.State != ConversationClosed || c.Agent != "" || c.LastAgent != "a1" {
		t.Fatalf("closed conversation %+v", c)
	}
	// a1 has 1 open, a2 1 open: v2's agent a2 would win the tie-break for
	// a new visitor, but v1 goes back to a1.
	wantAssigned(t, assign(t, s, clk, "v1", 5), "v1", "a1")
	// At the cap, the last agent is passed over.
	if _, err := s.CloseConversation(ctx, "v2", "a2", clk.tick()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseConversation(ctx, "v1", "a1", clk.tick()); err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, assign(t, s, clk, "v1", 1), "v1", "a2") // a1 has v4: at cap 1
	// Offline, the last agent is passed over too.
	if _, err := s.CloseConversation(ctx, "v2", "a2", clk.tick()); !errors.Is(err, ErrConflict) {
		t.Fatalf("closing a closed conversation = %v, want ErrConflict", err)
	}
	if _, err := s.CloseConversation(ctx, "v1", "a2", clk.tick()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetPresence(ctx, "a2", PresenceOffline, clk.tick()); err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, assign(t, s, clk, "v2", 5), "v2", "a1")
}

// testDeskQueueOldestFirst: with nobody online conversations queue; agents
// coming online drain the queue oldest first, up to their cap.
func testDeskQueueOldestFirst(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	deskAgents(t, s, clk, map[string]Presence{"a1": PresenceOffline, "a2": PresenceOffline})
	for _, v := range []string{"v3", "v1", "v2"} { // queued in this order
		wantQueued(t, assign(t, s, clk, v, 2), v)
	}
	if a, err := s.AssignNext(ctx, 2, clk.tick()); err != nil || a.Assigned {
		t.Fatalf("AssignNext with nobody online = %+v, %v", a, err)
	}
	if _, _, err := s.SetPresence(ctx, "a1", PresenceOnline, clk.tick()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v3", "v1"} {
		a, err := s.AssignNext(ctx, 2, clk.tick())
		if err != nil {
			t.Fatal(err)
		}
		wantAssigned(t, a, v, "a1")
	}
	if a, err := s.AssignNext(ctx, 2, clk.tick()); err != nil || a.Assigned {
		t.Fatalf("AssignNext with a1 at its cap = %+v, %v", a, err)
	}
	if pos, _ := s.QueuePosition(ctx, "v2"); pos != 1 {
		t.Fatalf("v2 at queue position %d, want 1", pos)
	}
	if _, _, err := s.SetPresence(ctx, "a2", PresenceOnline, clk.tick()); err != nil {
		t.Fatal(err)
	}
	a, err := s.AssignNext(ctx, 2, clk.tick())
	if err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, a, "v2", "a2")
	if a, err := s.AssignNext(ctx, 2, clk.tick()); err != nil || a.Assigned || a.Conversation.Visitor != "" {
		t.Fatalf("AssignNext on an empty queue = %+v, %v", a, err)
	}
}

func testDeskClaimTransferClose(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	deskAgents(t, s, clk, map[string]Presence{"a1": PresenceOffline, "a2": PresenceOnline, "a3": PresenceAway})
	if _, _, err := s.SetPresence(ctx, "a2", PresenceOffline, clk.tick()); err != nil {
		t.Fatal(err)
	}
	wantQueued(t, assign(t, s, clk, "v1", 5), "v1")
	if _, err := s.Claim(ctx, "nobody", "a1", clk.tick()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Claim of an unknown conversation = %v, want ErrNotFound", err)
	}
	// Claiming from the queue needs no presence and no room.
	a, err := s.Claim(ctx, "v1", "a1", clk.tick())
	if err != nil {
		t.Fatal(err)
	}
	wantAssigned(t, a, "v1", "a1")
	if a, err := s.Claim(ctx, "v1", "a1", clk.tick()); err != nil || a.Assigned || a.Conversation.Agent != "a1" {
		t.Fatalf("Claim by its own agent = %+v, %v", a, err)
	}
	if _, err := s.Claim(ctx, "v1", "a2", clk.tick()); !errors.Is(err, ErrConflict) {
		t.Fatalf("Claim of another's conversation = %v, want ErrConflict", err)
	}
	// Transfers go to online agents only, from the agent serving it only.
	for _, to := range []string{"a2", "a3", "a1", "ghost"} { // offline, away, itself, unknown
		if _, err := s.Transfer(ctx, "v1", "a1", to, clk.tick()); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Transfer to %s = %v, want ErrUnavailable", to, err)
		}
	}
	if _, _, err := s.SetPresence(ctx, "a2", PresenceOnline, clk.tick()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transfer(ctx, "v1", "a3", "a2", clk.tick()); !errors.Is(err, ErrConflict) {
		t.Fatalf("Transfer by an agent not serving it = %v, want ErrConflict", err)
	}
	at := clk.tick()
	c, err := s.Transfer(ctx, "v1", "a1", "a2", at)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != ConversationOpen || c.Agent != "a2" || c.LastAgent != "a2" || !c.AssignedAt.Equal(at) {
		t.Fatalf("transferred conversation %+v", c)
	}
	if got := openCounts(t, s); got["a1"] != 0 || got["a2"] != 1 {
		t.Fatalf("open counts after the transfer %v", got)
	}
	if _, err := s.CloseConversation(ctx, "v1", "a1", clk.tick()); !errors.Is(err, ErrConflict) {
		t.Fatalf("close by the previous agent = %v, want ErrConflict", err)
	}
	c, err = s.CloseConversation(ctx, "v1", "a2", clk.tick())
	if err != nil || c.State != ConversationClosed || c.Agent != "" || c.LastAgent != "a2" {
		t.Fatalf("CloseConversation = %+v, %v", c, err)
	}
	if _, err := s.Transfer(ctx, "v1", "a2", "a1", clk.tick()); !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrConflict) {
		t.Fatalf("Transfer of a closed conversation = %v", err)
	}
}

func testDeskPresence(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	if err := s.UpsertUsers(ctx, []User{{UID: "a1", Nickname: "One", Role: RoleAgent}, {UID: "a2", Nickname: "Two", Role: RoleAgent},
		{UID: "v9", Role: RoleVisitor}}); err != nil {
		t.Fatal(err)
	}
	agents, err := s.Agents(ctx)
	if err != nil || len(agents) != 2 || agents[0].UID != "a1" || agents[0].Presence != PresenceOffline || agents[0].Nickname != "One" {
		t.Fatalf("Agents before any presence = %+v, %v", agents, err)
	}
	changed, released, err := s.SetPresence(ctx, "a1", PresenceOnline, clk.tick())
	if err != nil || !changed || len(released) != 0 {
		t.Fatalf("SetPresence online = %v, %v, %v", changed, released, err)
	}
	if changed, _, err := s.SetPresence(ctx, "a1", PresenceOnline, clk.tick()); err != nil || changed {
		t.Fatalf("SetPresence online again = %v, %v; want unchanged", changed, err)
	}
	wantAssigned(t, assign(t, s, clk, "v1", 5), "v1", "a1")
	wantAssigned(t, assign(t, s, clk, "v2", 5), "v2", "a1")
	// Away keeps the conversations and takes no new ones.
	if changed, released, err := s.SetPresence(ctx, "a1", PresenceAway, clk.tick()); err != nil || !changed || len(released) != 0 {
		t.Fatalf("SetPresence away = %v, %v, %v", changed, released, err)
	}
	wantQueued(t, assign(t, s, clk, "v3", 5), "v3")
	if got := openCounts(t, s); got["a1"] != 2 {
		t.Fatalf("open counts while away %v", got)
	}
	// Offline returns them to the queue.
	changed, released, err = s.SetPresence(ctx, "a1", PresenceOffline, clk.tick())
	slices.Sort(released)
	if err != nil || !changed || !slices.Equal(released, []string{"v1", "v2"}) {
		t.Fatalf("SetPresence offline = %v, %v, %v; want v1, v2 released", changed, released, err)
	}
	for _, v := range []string{"v1", "v2"} {
		if c := conversation(t, s, v); c.State != ConversationQueued || c.Agent != "" || c.LastAgent != "a1" {
			t.Fatalf("released %s: %+v", v, c)
		}
	}
	if _, _, err := s.SetPresence(ctx, "a1", "busy", clk.tick()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetPresence busy = %v, want ErrInvalid", err)
	}

	// The grace period: lost agents go offline once lost long enough;
	// seen again in time, they stay.
	for _, a := range []string{"a1", "a2"} {
		if _, _, err := s.SetPresence(ctx, a, PresenceOnline, clk.tick()); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.AssignNext(ctx, 5, clk.tick()) // v3, the oldest
	if err != nil || !a.Assigned {
		t.Fatalf("AssignNext = %+v, %v", a, err)
	}
	lost := clk.tick()
	if err := s.AgentsDisconnected(ctx, []string{"a1", "a2"}, lost); err != nil {
		t.Fatal(err)
	}
	if err := s.AgentsDisconnected(ctx, []string{"a1"}, clk.tick()); err != nil { // keeps the first mark
		t.Fatal(err)
	}
	if err := s.AgentsConnected(ctx, []string{"a2"}); err != nil {
		t.Fatal(err)
	}
	if changes, err := s.ExpireAgents(ctx, lost.Add(-time.Microsecond), clk.tick()); err != nil || len(changes) != 0 {
		t.Fatalf("ExpireAgents before the grace = %+v, %v", changes, err)
	}
	changes, err := s.ExpireAgents(ctx, lost, clk.tick())
	if err != nil || len(changes) != 1 || changes[0].Agent != "a1" {
		t.Fatalf("ExpireAgents = %+v, %v; want a1 expired", changes, err)
	}
	if a.Conversation.Agent == "a1" && !slices.Equal(changes[0].Released, []string{"v3"}) {
		t.Fatalf("a1 expired releasing %v, want v3", changes[0].Released)
	}
	if changes, err := s.ExpireAgents(ctx, clk.tick(), clk.tick()); err != nil || len(changes) != 0 {
		t.Fatalf("ExpireAgents again = %+v, %v; want nothing", changes, err)
	}
	agents, err = s.Agents(ctx)
	if err != nil || len(agents) != 2 || agents[0].Presence != PresenceOffline || agents[1].Presence != PresenceOnline {
		t.Fatalf("Agents = %+v, %v", agents, err)
	}
	// An offline agent is not marked lost; SetPresence clears a mark.
	if err := s.AgentsDisconnected(ctx, []string{"a1"}, clk.tick()); err != nil {
		t.Fatal(err)
	}
	if err := s.AgentsDisconnected(ctx, []string{"a2"}, clk.tick()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetPresence(ctx, "a2", PresenceAway, clk.tick()); err != nil {
		t.Fatal(err)
	}
	if changes, err := s.ExpireAgents(ctx, clk.tick(), clk.tick()); err != nil || len(changes) != 0 {
		t.Fatalf("ExpireAgents after SetPresence = %+v, %v; want nothing", changes, err)
	}
}

func deskText(from, to, conv, body, cmid string) NewMessage {
	return NewMessage{From: from, To: to, Conv: conv, Text: body, Kind: KindText, CMID: cmid}
}

func systemLine(visitor, code string) NewMessage {
	return NewMessage{From: DeskUID, To: visitor, Conv: visitor, Kind: KindSystem, Text: `{"code":"` + code + `","params":{}}`}
}

func testDeskMessages(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	saved := save(t, s,
		deskText("v1", DeskUID, "v1", "hello, anyone?", "c1"),
		systemLine("v1", "assigned"),
		deskText("a1", "v1", "v1", "hi, I am a1", "a1-1"),
		text("v1", "a1", "a plain chat message, not the desk's"),
		deskText("v2", DeskUID, "v2", "another visitor", ""),
		systemLine("v1", "transferred"),
		deskText("a2", "v1", "v1", "a2 here", ""),
		NewMessage{From: "v1", To: "a2", Conv: "v1", Kind: KindImage, Text: "/desk/images/abc"},
	)
	if saved[0].Message.Conv != "v1" || saved[3].Message.Conv != "" {
		t.Fatalf("saved conv %q and %q", saved[0].Message.Conv, saved[3].Message.Conv)
	}
	// The conversation follows the visitor across agents; nobody else's.
	want := []Message{saved[0].Message, saved[1].Message, saved[2].Message, saved[5].Message, saved[6].Message, saved[7].Message}
	got, err := s.ConversationHistory(ctx, "v1", Page{})
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, got, want)
	got, err = s.ConversationHistory(ctx, "v1", Page{Before: saved[6].Message.ID, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, got, want[2:4])
	got, err = s.ConversationHistory(ctx, "v1", Page{After: saved[1].Message.ID, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, got, want[2:4])
	// A retry is a duplicate with the conv of the first.
	again := save(t, s, deskText("v1", DeskUID, "v1", "hello, anyone?", "c1"))
	if !again[0].Duplicate || again[0].Message.ID != saved[0].Message.ID || again[0].Message.Conv != "v1" {
		t.Fatalf("retry = %+v", again[0])
	}

	// Reading: the agent side reads the visitor's messages, the visitor
	// the agents' and the desk's.
	n, err := s.MarkConversationRead(ctx, "v1", false, saved[7].Message.ID, clk.tick())
	if err != nil || n != 2 {
		t.Fatalf("agents read %d, %v; want the visitor's 2", n, err)
	}
	n, err = s.MarkConversationRead(ctx, "v1", true, saved[2].Message.ID, clk.tick())
	if err != nil || n != 2 {
		t.Fatalf("visitor read %d, %v; want 2 (system line and a1's)", n, err)
	}
	got, _ = s.ConversationHistory(ctx, "v1", Page{})
	for i, m := range got {
		wantRead := i <= 2 || m.From == "v1"
		if m.ReadAt.IsZero() == wantRead {
			t.Errorf("message %d (%s from %s) read at %v", i, m.Text, m.From, m.ReadAt)
		}
	}
	if n, err := s.MarkConversationRead(ctx, "v1", true, saved[7].Message.ID, clk.tick()); err != nil || n != 2 {
		t.Fatalf("visitor read the rest: %d, %v; want 2", n, err)
	}
	// The plain message stays unread.
	if counts, err := s.UnreadCounts(ctx, "a1"); err != nil || counts["v1"] != 1 {
		t.Fatalf("plain unread counts %v, %v", counts, err)
	}
	// A conv must be one of the two.
	if _, err := s.SaveMessages(ctx, []NewMessage{deskText("a1", "a2", "v1", "x", "")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("conv of neither party: %v, want ErrInvalid", err)
	}
}

func testDeskConversationList(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	deskAgents(t, s, clk, map[string]Presence{"a1": PresenceOnline})
	note := func(visitor string, saved []Saved) {
		t.Helper()
		for _, sv := range saved {
			if err := s.NoteActivity(ctx, visitor, sv.Message.ID, clk.tick()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, err := s.TouchVisitor(ctx, v, VisitorInfo{PageURL: "https://shop.test/" + v}, clk.tick()); err != nil {
			t.Fatal(err)
		}
	}
	m1 := save(t, s, deskText("v1", DeskUID, "v1", "first", ""), deskText("v1", DeskUID, "v1", "second", ""))
	note("v1", m1)
	wantAssigned(t, assign(t, s, clk, "v1", 1), "v1", "a1")
	m2 := save(t, s, deskText("v2", DeskUID, "v2", "v2 writes", ""))
	note("v2", m2)
	wantQueued(t, assign(t, s, clk, "v2", 1), "v2")
	m3 := save(t, s, deskText("a1", "v1", "v1", "a1 answers", ""))
	// Notes may arrive late and out of order: the newest id wins.
	note("v1", m3)
	note("v1", m1[:1])

	list, err := s.Conversations(ctx, ConversationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Visitor != "v1" || list[1].Visitor != "v2" {
		t.Fatalf("Conversations = %+v; want v1 then v2 (v3 never wrote)", list)
	}
	if l := list[0]; l.Last.ID != m3[0].Message.ID || l.Last.Text != "a1 answers" || l.Last.From != "a1" || l.Unread != 2 ||
		l.State != ConversationOpen || l.Agent != "a1" || l.Info.PageURL != "https://shop.test/v1" || l.Last.CreatedAt.IsZero() {
		t.Fatalf("v1 summary %+v", l)
	}
	if l := list[1]; l.Last.Text != "v2 writes" || l.Unread != 1 || l.State != ConversationQueued {
		t.Fatalf("v2 summary %+v", l)
	}
	for _, tc := range []struct {
		f    ConversationFilter
		want []string
	}{
		{ConversationFilter{Agent: "a1"}, []string{"v1"}},
		{ConversationFilter{Agent: "a2"}, nil},
		{ConversationFilter{State: ConversationQueued}, []string{"v2"}},
		{ConversationFilter{Limit: 1}, []string{"v1"}},
		{ConversationFilter{Visitor: "v2"}, []string{"v2"}},
		{ConversationFilter{Visitor: "v3"}, nil},
		{ConversationFilter{Before: list[0].LastMsgID}, []string{"v2"}},
	} {
		got, err := s.Conversations(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var visitors []string
		for _, c := range got {
			visitors = append(visitors, c.Visitor)
		}
		if !slices.Equal(visitors, tc.want) {
			t.Errorf("Conversations(%+v) = %v, want %v", tc.f, visitors, tc.want)
		}
	}
	if _, err := s.MarkConversationRead(ctx, "v1", false, m1[1].Message.ID, clk.tick()); err != nil {
		t.Fatal(err)
	}
	list, _ = s.Conversations(ctx, ConversationFilter{Agent: "a1"})
	if len(list) != 1 || list[0].Unread != 0 {
		t.Fatalf("after reading: %+v", list)
	}
}

func testDeskImages(t *testing.T, s Store) { testImages(t, s) }

func testImages(t *testing.T, s ImageStore) {
	ctx := ctxT(t)
	img := Image{ID: "0123abcd", Owner: "v1", ContentType: "image/png", Data: []byte("\x89PNG full"),
		ThumbType: "image/jpeg", Thumb: []byte("thumb bytes"), Width: 640, Height: 480, CreatedAt: newClock().tick()}
	if err := s.SaveImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveImage(ctx, img); err == nil {
		t.Fatal("saving an image id twice succeeded")
	}
	full, err := s.Image(ctx, img.ID, false)
	if err != nil || full.ContentType != "image/png" || string(full.Data) != string(img.Data) || full.Width != 640 ||
		full.Height != 480 || full.Owner != "v1" || !full.CreatedAt.Equal(img.CreatedAt) {
		t.Fatalf("Image = %+v, %v", full, err)
	}
	thumb, err := s.Image(ctx, img.ID, true)
	if err != nil || thumb.ContentType != "image/jpeg" || string(thumb.Data) != "thumb bytes" {
		t.Fatalf("thumbnail = %+v, %v", thumb, err)
	}
	if _, err := s.Image(ctx, "ffff", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown image: %v, want ErrNotFound", err)
	}
	for name, bad := range map[string]Image{
		"bad id":     {ID: "../etc", Owner: "v1", ContentType: "image/png", Data: []byte("x"), ThumbType: "image/png", Thumb: []byte("x"), Width: 1, Height: 1},
		"empty":      {ID: "aa", Owner: "v1", ContentType: "image/png", ThumbType: "image/png", Thumb: []byte("x"), Width: 1, Height: 1},
		"not image":  {ID: "ab", Owner: "v1", ContentType: "text/html", Data: []byte("x"), ThumbType: "image/png", Thumb: []byte("x"), Width: 1, Height: 1},
		"no owner":   {ID: "ac", ContentType: "image/png", Data: []byte("x"), ThumbType: "image/png", Thumb: []byte("x"), Width: 1, Height: 1},
		"no size":    {ID: "ad", Owner: "v1", ContentType: "image/png", Data: []byte("x"), ThumbType: "image/png", Thumb: []byte("x")},
		"over limit": {ID: "ae", Owner: "v1", ContentType: "image/png", Data: make([]byte, MaxImageBytes+1), ThumbType: "image/png", Thumb: []byte("x"), Width: 1, Height: 1},
	} {
		if err := s.SaveImage(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: SaveImage = %v, want ErrInvalid", name, err)
		}
	}
}

func testDeskCannedReplies(t *testing.T, s Store) {
	ctx := ctxT(t)
	clk := newClock()
	if list, err := s.CannedReplies(ctx); err != nil || len(list) != 0 {
		t.Fatalf("CannedReplies on a new store = %v, %v", list, err)
	}
	for _, r := range []CannedReply{{"wait", "请稍等"}, {"hello", "您好！"}, {"wait", "请稍等，我查一下"}} {
		if err := s.SaveCannedReply(ctx, r, clk.tick()); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.CannedReplies(ctx)
	if err != nil || !slices.Equal(list, []CannedReply{{"hello", "您好！"}, {"wait", "请稍等，我查一下"}}) {
		t.Fatalf("CannedReplies = %v, %v", list, err)
	}
	if err := s.DeleteCannedReply(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCannedReply(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete = %v, want ErrNotFound", err)
	}
	for _, bad := range []CannedReply{{"", "x"}, {"Hello", "x"}, {"a b", "x"}, {"ok", ""}, {strings.Repeat("a", 65), "x"}} {
		if err := s.SaveCannedReply(ctx, bad, clk.tick()); !errors.Is(err, ErrInvalid) {
			t.Errorf("SaveCannedReply(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func testDeskInvalidInput(t *testing.T, s Store) {
	ctx := ctxT(t)
	now := newClock().tick()
	checks := map[string]error{}
	_, checks["TouchVisitor empty"] = s.TouchVisitor(ctx, "", VisitorInfo{}, now)
	_, checks["TouchVisitor long info"] = s.TouchVisitor(ctx, "v1", VisitorInfo{PageURL: strings.Repeat("x", maxInfoBytes+1)}, now)
	_, checks["TouchVisitor bad UTF-8"] = s.TouchVisitor(ctx, "v1", VisitorInfo{Email: "a\xffb"}, now)
	_, checks["Assign empty"] = s.Assign(ctx, "", 5, now)
	_, checks["Claim empty agent"] = s.Claim(ctx, "v1", "", now)
	_, checks["Transfer empty"] = s.Transfer(ctx, "v1", "", "a2", now)
	_, checks["Close empty"] = s.CloseConversation(ctx, "", "a1", now)
	_, checks["MarkConversationRead negative"] = s.MarkConversationRead(ctx, "v1", true, -1, now)
	_, checks["Conversations state"] = s.Conversations(ctx, ConversationFilter{State: "lost"})
	_, checks["Conversations negative"] = s.Conversations(ctx, ConversationFilter{Limit: -1})
	_, checks["ConversationHistory empty"] = s.ConversationHistory(ctx, "", Page{})
	_, _, checks["SetPresence empty"] = s.SetPresence(ctx, "", PresenceOnline, now)
	_, checks["system line outside the desk"] = s.SaveMessages(ctx, []NewMessage{{From: DeskUID, To: "v1", Kind: KindSystem, Text: "{}"}})
	_, checks["system line from a user"] = s.SaveMessages(ctx, []NewMessage{{From: "a1", To: "v1", Conv: "v1", Kind: KindSystem, Text: "{}"}})
	for name, err := range checks {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// testDeskConcurrentAssign is two workers (two stores on one database)
// assigning one set of visitors at once: 16 goroutines call Assign for every
// visitor in their own random order, and 4 more drain the queue with
// AssignNext, while agents go online. Exactly one call assigns each
// conversation that ends open, every call agrees on its agent, and no agent
// ever exceeds the cap.
func testDeskConcurrentAssign(t *testing.T, s1, s2 Store) {
	const (
		agents      = 5
		maxOpen     = 3
		visitors    = 40
		assigners   = 16
		drainers    = 4
		drainRounds = 20
	)
	ctx := ctxT(t)
	var users []User
	for i := range agents {
		users = append(users, User{UID: fmt.Sprintf("a%d", i), Role: RoleAgent})
	}
	if err := s1.UpsertUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	// Two agents online from the start, the others come online during
	// the run.
	for i := range 2 {
		if _, _, err := s1.SetPresence(ctx, fmt.Sprintf("a%d", i), PresenceOnline, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		assigned = map[string][]string{} // visitor → agents of calls that assigned it
		seen     = map[string]string{}   // visitor → agent any call saw it open with
		problems []string
	)
	record := func(a Assignment) {
		mu.Lock()
		defer mu.Unlock()
		c := a.Conversation
		if a.Assigned {
			assigned[c.Visitor] = append(assigned[c.Visitor], c.Agent)
		}
		if c.State == ConversationOpen {
			if prev, ok := seen[c.Visitor]; ok && prev != c.Agent {
				problems = append(problems, fmt.Sprintf("%s seen open with %s and %s", c.Visitor, prev, c.Agent))
			}
			seen[c.Visitor] = c.Agent
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for w := range assigners {
		st := []Store{s1, s2}[w%2]
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for _, v := range rng.Perm(visitors) {
				a, err := st.Assign(gctx, fmt.Sprintf("v%02d", v), maxOpen, time.Now())
				if err != nil {
					return err
				}
				record(a)
			}
			return nil
		})
	}
	for w := range drainers {
		st := []Store{s1, s2}[w%2]
		g.Go(func() error {
			for r := range drainRounds {
				if w == 0 && r < agents-2 {
					if _, _, err := st.SetPresence(gctx, fmt.Sprintf("a%d", r+2), PresenceOnline, time.Now()); err != nil {
						return err
					}
				}
				for {
					a, err := st.AssignNext(gctx, maxOpen, time.Now())
					if err != nil {
						return err
					}
					if !a.Assigned {
						break
					}
					record(a)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Drain what the last agents' arrival left queued.
	for {
		a, err := s2.AssignNext(ctx, maxOpen, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !a.Assigned {
			break
		}
		record(a)
	}
	for _, p := range problems {
		t.Error(p)
	}
	open := 0
	for v := range visitors {
		visitor := fmt.Sprintf("v%02d", v)
		c := conversation(t, s1, visitor)
		got := assigned[visitor]
		switch c.State {
		case ConversationOpen:
			open++
			if len(got) != 1 || got[0] != c.Agent {
				t.Errorf("%s is open with %s; calls that assigned it: %v (want exactly one)", visitor, c.Agent, got)
			}
		case ConversationQueued:
			if len(got) != 0 {
				t.Errorf("%s is queued, yet calls assigned it to %v", visitor, got)
			}
		default:
			t.Errorf("%s in state %s", visitor, c.State)
		}
	}
	counts := openCounts(t, s2)
	total := 0
	for agent, n := range counts {
		if n > maxOpen {
			t.Errorf("%s has %d open conversations, over the cap of %d", agent, n, maxOpen)
		}
		total += n
	}
	if open != agents*maxOpen || total != open {
		t.Errorf("%d conversations open (agents count %d), want every agent full: %d", open, total, agents*maxOpen)
	}
}

// TestDirImages runs the image part of the contract on a directory.
func TestDirImages(t *testing.T) {
	d, err := NewDirImages(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	testImages(t, d)
	if _, err := d.Image(t.Context(), "../../etc/passwd", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a path as image id: %v, want ErrNotFound", err)
	}
}
