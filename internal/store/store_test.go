package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testStore is the contract every Store implementation passes. open returns
// a store on an empty database, closed when t ends; again opens another
// store on the database of one open returned, as a second worker process
// would.
func testStore(t *testing.T, open func(t *testing.T) Store, again func(t *testing.T, s Store) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"HistoryExcludesOtherConversations", testHistoryExcludesOthers},
		{"PagingBefore", testPagingBefore},
		{"PagingAfter", testPagingAfter},
		{"Limits", testLimits},
		{"Dedup", testDedup},
		{"Delivery", testDelivery},
		{"MarkRead", testMarkRead},
		{"UnreadCounts", testUnreadCounts},
		{"Users", testUsers},
		{"InvalidInput", testInvalidInput},
		{"ConcurrentSave", testConcurrentSave},
		{"CloseIdempotent", testCloseIdempotent},
		// The customer-service desk (desk_contract_test.go).
		{"DeskVisitor", testDeskVisitor},
		{"DeskAssignLeastLoaded", testDeskAssignLeastLoaded},
		{"DeskReturningVisitor", testDeskReturningVisitor},
		{"DeskQueueOldestFirst", testDeskQueueOldestFirst},
		{"DeskClaimTransferClose", testDeskClaimTransferClose},
		{"DeskPresence", testDeskPresence},
		{"DeskMessages", testDeskMessages},
		{"DeskConversationList", testDeskConversationList},
		{"DeskImages", testDeskImages},
		{"DeskCannedReplies", testDeskCannedReplies},
		{"DeskInvalidInput", testDeskInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
	t.Run("DeskConcurrentAssign", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		testDeskConcurrentAssign(t, s, again(t, s))
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func text(from, to, body string) NewMessage {
	return NewMessage{From: from, To: to, Text: body, Kind: KindText}
}

func save(t *testing.T, s Store, msgs ...NewMessage) []Saved {
	t.Helper()
	saved, err := s.SaveMessages(ctxT(t), msgs)
	if err != nil {
		t.Fatalf("SaveMessages: %v", err)
	}
	if len(saved) != len(msgs) {
		t.Fatalf("SaveMessages returned %d results for %d messages", len(saved), len(msgs))
	}
	return saved
}

func history(t *testing.T, s Store, a, b string, p Page) []Message {
	t.Helper()
	msgs, err := s.History(ctxT(t), a, b, p)
	if err != nil {
		t.Fatalf("History(%s, %s, %+v): %v", a, b, p, err)
	}
	return msgs
}

func ids(msgs []Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func savedIDs(saved []Saved) []int64 {
	out := make([]int64, len(saved))
	for i, s := range saved {
		out[i] = s.Message.ID
	}
	return out
}

func messages(saved []Saved) []Message {
	out := make([]Message, len(saved))
	for i, s := range saved {
		out[i] = s.Message
	}
	return out
}

// sameMessage compares messages, times with Equal.
func sameMessage(a, b Message) bool {
	return a.ID == b.ID && a.From == b.From && a.To == b.To && a.Text == b.Text && a.Kind == b.Kind &&
		a.CMID == b.CMID && a.CreatedAt.Equal(b.CreatedAt) && a.Delivered == b.Delivered && a.ReadAt.Equal(b.ReadAt)
}

func sameMessages(t *testing.T, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages %v, want %d %v", len(got), ids(got), len(want), ids(want))
	}
	for i := range got {
		if !sameMessage(got[i], want[i]) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func increasing(t *testing.T, ids []int64) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids not increasing: %v", ids)
		}
	}
}

// checkTime asserts ts is UTC, has microsecond precision and lies in
// [from, to] (with a second of slack for the database's clock).
func checkTime(t *testing.T, what string, ts, from, to time.Time) {
	t.Helper()
	if ts.Location() != time.UTC {
		t.Errorf("%s %v is not UTC", what, ts)
	}
	if ts.Nanosecond()%1000 != 0 {
		t.Errorf("%s %v has sub-microsecond digits", what, ts)
	}
	if ts.Before(from.Add(-time.Second)) || ts.After(to.Add(time.Second)) {
		t.Errorf("%s %v outside [%v, %v]", what, ts, from, to)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	in := []NewMessage{
		text("85", "86", `<img src=x onerror=alert(1)>`),
		text("86", "85", "你好，我是客服大美如斯。\n有什么可以帮您？"),
		{From: "85", To: "86", Text: "/uploads/2024/a b.png?x=1&y=<2>", Kind: KindImage},
		text("85", "86", "line 1\r\nline 2\n\n\ttabbed \"quoted\" 'single' \\ back & amp; &lt; 😀"),
		text("86", "85", strings.Repeat("长", MaxTextBytes/3)),
	}
	before := time.Now()
	saved := save(t, s, in...)
	after := time.Now()
	increasing(t, savedIDs(saved))
	for i, sv := range saved {
		m := sv.Message
		if sv.Duplicate {
			t.Errorf("message %d flagged Duplicate", i)
		}
		if m.From != in[i].From || m.To != in[i].To || m.Text != in[i].Text || m.Kind != in[i].Kind || m.CMID != "" {
			t.Errorf("saved %d = %+v, want %+v", i, m, in[i])
		}
		if m.Delivered || !m.ReadAt.IsZero() {
			t.Errorf("new message %d delivered %v read at %v; want neither", i, m.Delivered, m.ReadAt)
		}
		checkTime(t, "CreatedAt", m.CreatedAt, before, after)
	}
	got := history(t, s, "85", "86", Page{})
	sameMessages(t, got, messages(saved))
	if got[0].Text != `<img src=x onerror=alert(1)>` {
		t.Fatalf("text not raw: %q", got[0].Text)
	}
	sameMessages(t, history(t, s, "86", "85", Page{}), messages(saved))

	more := save(t, s, text("85", "86", "later"))
	if more[0].Message.ID <= saved[len(saved)-1].Message.ID {
		t.Fatalf("id %d of a later batch not above %d", more[0].Message.ID, saved[len(saved)-1].Message.ID)
	}
	if got := history(t, s, "85", "86", Page{}); len(got) != len(saved)+1 || got[len(got)-1].ID != more[0].Message.ID {
		t.Fatalf("history after a second batch: %v", ids(got))
	}
	if saved, err := s.SaveMessages(ctxT(t), nil); err != nil || len(saved) != 0 {
		t.Fatalf("SaveMessages(nil) = %v, %v", saved, err)
	}
}

// testHistoryExcludesOthers is the seed's bug: its history query ORed
// from/to conditions and so returned 85→87 and 88→86 in the 85↔86 chat.
func testHistoryExcludesOthers(t *testing.T, s Store) {
	saved := save(t, s,
		text("85", "86", "a"),
		text("85", "87", "b"),
		text("86", "85", "c"),
		text("88", "86", "d"),
		text("87", "85", "e"),
		text("86", "88", "f"),
		text("85", "8", "g"),  // prefixes must not match either
		text("8", "586", "h"), // nor concatenations
		text("85", "86", "i"),
	)
	want := []Message{saved[0].Message, saved[2].Message, saved[8].Message}
	sameMessages(t, history(t, s, "85", "86", Page{}), want)
	sameMessages(t, history(t, s, "86", "85", Page{}), want)
	sameMessages(t, history(t, s, "85", "87", Page{}), []Message{saved[1].Message, saved[4].Message})
	sameMessages(t, history(t, s, "86", "88", Page{}), []Message{saved[3].Message, saved[5].Message})
	sameMessages(t, history(t, s, "85", "89", Page{}), nil)
}

// saveConversation stores n messages alternating between a and b, in
// batches of 7, and returns them in order.
func saveConversation(t *testing.T, s Store, a, b string, n int) []Message {
	t.Helper()
	var all []Message
	for start := 0; start < n; start += 7 {
		var batch []NewMessage
		for i := start; i < min(start+7, n); i++ {
			from, to := a, b
			if i%2 == 1 {
				from, to = b, a
			}
			batch = append(batch, text(from, to, fmt.Sprintf("message %d", i)))
		}
		all = append(all, messages(save(t, s, batch...))...)
	}
	increasing(t, ids(all))
	return all
}

func testPagingBefore(t *testing.T, s Store) {
	all := saveConversation(t, s, "85", "86", 35)
	saveConversation(t, s, "85", "87", 12) // interleaved noise
	var got []Message
	var sizes []int
	p := Page{Limit: 10}
	for {
		page := history(t, s, "86", "85", p)
		if len(page) == 0 {
			break
		}
		increasing(t, ids(page))
		sizes = append(sizes, len(page))
		got = append(page, got...)
		p.Before = page[0].ID
	}
	if !slices.Equal(sizes, []int{10, 10, 10, 5}) {
		t.Fatalf("page sizes %v, want [10 10 10 5]", sizes)
	}
	sameMessages(t, got, all)

	// The newest page is the last 10, oldest first.
	sameMessages(t, history(t, s, "85", "86", Page{Limit: 10}), all[25:])
	// Before an id in the middle.
	sameMessages(t, history(t, s, "85", "86", Page{Before: all[12].ID, Limit: 5}), all[7:12])
}

func testPagingAfter(t *testing.T, s Store) {
	all := saveConversation(t, s, "85", "86", 35)
	saveConversation(t, s, "86", "88", 5)
	sameMessages(t, history(t, s, "85", "86", Page{After: all[19].ID}), all[20:30])
	sameMessages(t, history(t, s, "85", "86", Page{After: all[19].ID, Limit: 50}), all[20:])
	sameMessages(t, history(t, s, "85", "86", Page{After: all[34].ID}), nil)
	// Both bounds: the oldest after After, below Before.
	sameMessages(t, history(t, s, "85", "86", Page{After: all[3].ID, Before: all[8].ID, Limit: 2}), all[4:6])
	sameMessages(t, history(t, s, "85", "86", Page{After: all[3].ID, Before: all[8].ID, Limit: 100}), all[4:8])
	// Paging forward from the first message visits every later one once.
	got := []Message{all[0]}
	p := Page{After: all[0].ID, Limit: 10}
	for {
		page := history(t, s, "86", "85", p)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		p.After = page[len(page)-1].ID
	}
	sameMessages(t, got, all)
}

func testLimits(t *testing.T, s Store) {
	all := saveConversation(t, s, "85", "86", 120)
	for _, tc := range []struct {
		limit, want int
	}{{0, 10}, {1, 1}, {5, 5}, {100, 100}, {101, 100}, {1000, 100}} {
		sameMessages(t, history(t, s, "85", "86", Page{Limit: tc.limit}), all[120-tc.want:])
		sameMessages(t, history(t, s, "85", "86", Page{After: all[0].ID, Limit: tc.limit}), all[1:1+tc.want])
	}
}

func testDedup(t *testing.T, s Store) {
	first := save(t, s, NewMessage{From: "85", To: "86", Text: "hello", Kind: KindText, CMID: "c1"})
	if first[0].Duplicate {
		t.Fatal("first save flagged Duplicate")
	}
	// A retry in a later batch, even with other content, returns the first.
	again := save(t, s,
		NewMessage{From: "85", To: "86", Text: "hello (retry)", Kind: KindText, CMID: "c1"},
		NewMessage{From: "85", To: "86", Text: "new", Kind: KindText, CMID: "c2"},
	)
	if !again[0].Duplicate || !sameMessage(again[0].Message, first[0].Message) {
		t.Fatalf("retry = %+v, want duplicate of %+v", again[0], first[0].Message)
	}
	if again[1].Duplicate || again[1].Message.ID <= first[0].Message.ID {
		t.Fatalf("new message in a batch with a retry = %+v", again[1])
	}
	// Within one batch: the second is a duplicate of the first.
	within := save(t, s,
		NewMessage{From: "85", To: "86", Text: "x", Kind: KindText, CMID: "c3"},
		NewMessage{From: "85", To: "86", Text: "y", Kind: KindText, CMID: "c4"},
		NewMessage{From: "85", To: "86", Text: "x again", Kind: KindText, CMID: "c3"},
		NewMessage{From: "85", To: "86", Text: "c1 again", Kind: KindText, CMID: "c1"},
		NewMessage{From: "85", To: "86", Text: "c1 once more", Kind: KindText, CMID: "c1"},
	)
	if within[0].Duplicate || within[1].Duplicate {
		t.Fatalf("first occurrences flagged Duplicate: %+v", within[:2])
	}
	if !within[2].Duplicate || !sameMessage(within[2].Message, within[0].Message) || within[2].Message.Text != "x" {
		t.Fatalf("repeat within batch = %+v, want duplicate of %+v", within[2], within[0].Message)
	}
	for _, i := range []int{3, 4} {
		if !within[i].Duplicate || !sameMessage(within[i].Message, first[0].Message) {
			t.Fatalf("result %d = %+v, want duplicate of %+v", i, within[i], first[0].Message)
		}
	}
	// The same cmid from another sender is another message.
	other := save(t, s, NewMessage{From: "86", To: "85", Text: "hello", Kind: KindText, CMID: "c1"})
	if other[0].Duplicate || other[0].Message.ID == first[0].Message.ID {
		t.Fatalf("same cmid from another sender = %+v", other[0])
	}
	// An empty cmid never de-duplicates.
	plain := save(t, s, text("85", "86", "same"), text("85", "86", "same"))
	plain2 := save(t, s, text("85", "86", "same"))
	if plain[0].Duplicate || plain[1].Duplicate || plain2[0].Duplicate ||
		plain[0].Message.ID == plain[1].Message.ID || plain2[0].Message.ID <= plain[1].Message.ID {
		t.Fatalf("empty cmid de-duplicated: %+v %+v", plain, plain2)
	}
	got := history(t, s, "85", "86", Page{Limit: 100})
	want := []Message{first[0].Message, again[1].Message, within[0].Message, within[1].Message,
		other[0].Message, plain[0].Message, plain[1].Message, plain2[0].Message}
	sameMessages(t, got, want)
}

func testDelivery(t *testing.T, s Store) {
	saved := save(t, s, text("85", "86", "a"), text("86", "85", "b"), text("85", "86", "c"))
	ctx := ctxT(t)
	a, c := saved[0].Message.ID, saved[2].Message.ID
	// MarkDelivered records deliveries; a retry then claims nothing.
	b := saved[1].Message.ID
	if err := s.MarkDelivered(ctx, []int64{b, b, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ClaimDelivery(ctx, b, 0); err != nil || ok {
		t.Fatalf("ClaimDelivery of a message marked delivered = %v, %v; want false", ok, err)
	}
	if err := s.MarkDelivered(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// A message younger than the claim's minimum age is not claimed, and
	// stays undelivered.
	if ok, err := s.ClaimDelivery(ctx, a, time.Hour); err != nil || ok {
		t.Fatalf("ClaimDelivery of a message younger than its minAge = %v, %v; want false", ok, err)
	}
	if m := history(t, s, "85", "86", Page{After: a - 1, Limit: 1})[0]; m.Delivered {
		t.Fatalf("message %d delivered after a refused claim", a)
	}
	// The first delivery of a new message claims it; later ones do not.
	if ok, err := s.ClaimDelivery(ctx, a, 0); err != nil || !ok {
		t.Fatalf("ClaimDelivery of a new message = %v, %v; want true", ok, err)
	}
	if ok, err := s.ClaimDelivery(ctx, a, 0); err != nil || ok {
		t.Fatalf("ClaimDelivery of a delivered message = %v, %v; want false", ok, err)
	}
	// A delivery that reached nobody releases the message; then exactly one
	// of several concurrent claims wins it.
	if err := s.ReleaseDelivery(ctx, c); err != nil {
		t.Fatal(err)
	}
	if m := history(t, s, "85", "86", Page{After: c - 1, Limit: 1})[0]; m.Delivered {
		t.Fatalf("released message %d still delivered", c)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.ClaimDelivery(ctx, c, 0)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d of 8 concurrent claims won, want 1", wins.Load())
	}
	if ok, err := s.ClaimDelivery(ctx, 1<<40, 0); err != nil || ok {
		t.Fatalf("ClaimDelivery of a missing message = %v, %v; want false", ok, err)
	}
	// A read message stays delivered.
	if _, err := s.MarkRead(ctx, "86", "85", a); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseDelivery(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, m := range history(t, s, "85", "86", Page{}) {
		if want := m.ID == a || m.ID == b || m.ID == c; m.Delivered != want {
			t.Errorf("message %d delivered %v, want %v", m.ID, m.Delivered, want)
		}
	}
}

func testMarkRead(t *testing.T, s Store) {
	ctx := ctxT(t)
	var toAgent []Message
	for i := range 5 {
		toAgent = append(toAgent, save(t, s, text("85", "86", fmt.Sprint("q", i)))[0].Message)
	}
	toVisitor := messages(save(t, s, text("86", "85", "a1"), text("86", "85", "a2"), text("86", "85", "a3")))
	other := messages(save(t, s, text("87", "86", "o1"), text("87", "86", "o2")))
	// Messages after upTo arrive later and must stay unread.
	late := save(t, s, text("85", "86", "late"))[0].Message

	before := time.Now()
	n, err := s.MarkRead(ctx, "86", "85", toAgent[2].ID)
	after := time.Now()
	if err != nil || n != 3 {
		t.Fatalf("MarkRead up to the 3rd = %d, %v; want 3", n, err)
	}
	if n, err := s.MarkRead(ctx, "86", "85", toAgent[2].ID); err != nil || n != 0 {
		t.Fatalf("MarkRead again = %d, %v; want 0", n, err)
	}
	// Wrong direction: 85 reading 86's messages is another call.
	if n, err := s.MarkRead(ctx, "85", "86", 0); err != nil || n != 0 {
		t.Fatalf("MarkRead up to 0 = %d, %v; want 0", n, err)
	}
	got := history(t, s, "85", "86", Page{Limit: 100})
	for _, m := range got {
		wantRead := m.From == "85" && m.ID <= toAgent[2].ID
		if m.ReadAt.IsZero() == wantRead {
			t.Errorf("message %d %s→%s read at %v, want read %v", m.ID, m.From, m.To, m.ReadAt, wantRead)
		}
		if wantRead {
			checkTime(t, "ReadAt", m.ReadAt, before, after)
			if !m.Delivered {
				t.Errorf("read message %d not delivered", m.ID)
			}
		}
	}
	if n, err := s.MarkRead(ctx, "86", "85", late.ID); err != nil || n != 3 {
		t.Fatalf("MarkRead up to the latest = %d, %v; want 3", n, err)
	}
	counts, err := s.UnreadCounts(ctx, "86")
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts["87"] != len(other) {
		t.Fatalf("unread for 86 = %v, want map[87:2]", counts)
	}
	counts, err = s.UnreadCounts(ctx, "85")
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts["86"] != len(toVisitor) {
		t.Fatalf("unread for 85 = %v, want map[86:3]", counts)
	}
	if n, err := s.MarkRead(ctx, "85", "86", 1<<40); err != nil || n != 3 {
		t.Fatalf("85 marks 86's read = %d, %v; want 3", n, err)
	}
}

func testUnreadCounts(t *testing.T, s Store) {
	ctx := ctxT(t)
	counts, err := s.UnreadCounts(ctx, "86")
	if err != nil || counts == nil || len(counts) != 0 {
		t.Fatalf("UnreadCounts on an empty store = %v, %v; want an empty map", counts, err)
	}
	save(t, s,
		text("85", "86", "1"), text("85", "86", "2"), text("87", "86", "3"),
		text("89", "86", "4"), text("86", "85", "not to 86"), text("85", "88", "not to 86"),
	)
	last := save(t, s, text("89", "86", "5"))[0].Message
	if _, err := s.MarkRead(ctx, "86", "89", last.ID); err != nil {
		t.Fatal(err)
	}
	counts, err = s.UnreadCounts(ctx, "86")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"85": 2, "87": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("UnreadCounts(86) = %v, want %v (89 read, so absent)", counts, want)
	}
}

func testUsers(t *testing.T, s Store) {
	ctx := ctxT(t)
	got, err := s.Users(ctx, "85")
	if err != nil || len(got) != 0 {
		t.Fatalf("Users on an empty store = %v, %v", got, err)
	}
	if err := s.UpsertUsers(ctx, DemoUsers()); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertUsers(ctx, DemoUsers()); err != nil { // idempotent
		t.Fatal(err)
	}
	got, err = s.Users(ctx, "85", "86", "999", "86")
	if err != nil {
		t.Fatal(err)
	}
	demo := DemoUsers()
	want := map[string]User{"85": demo[0], "86": demo[1]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Users = %v, want %v", got, want)
	}
	if got, err := s.Users(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Users() = %v, %v", got, err)
	}
	// Update, and the last of repeated uids wins.
	err = s.UpsertUsers(ctx, []User{
		{UID: "85", Nickname: "first", Role: RoleVisitor},
		{UID: "90", Nickname: "新客服", AvatarURL: "/avatars/90.svg", Role: RoleAgent},
		{UID: "85", Nickname: "紫罗兰", AvatarURL: "/a/85.png", Role: RoleAgent},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Users(ctx, "85", "86", "90")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]User{
		"85": {UID: "85", Nickname: "紫罗兰", AvatarURL: "/a/85.png", Role: RoleAgent},
		"86": demo[1],
		"90": {UID: "90", Nickname: "新客服", AvatarURL: "/avatars/90.svg", Role: RoleAgent},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Users after update = %v, want %v", got, want)
	}
	for _, u := range []User{
		{UID: "", Role: RoleVisitor},
		{UID: "91", Role: ""},
		{UID: "91", Role: "admin"},
		{UID: "91", Role: RoleAgent, Nickname: "bad\xff"},
	} {
		if err := s.UpsertUsers(ctx, []User{{UID: "92", Role: RoleAgent}, u}); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpsertUsers(%+v) = %v, want ErrInvalid", u, err)
		}
	}
	if got, err := s.Users(ctx, "91", "92"); err != nil || len(got) != 0 {
		t.Fatalf("invalid upserts stored users: %v, %v", got, err)
	}
}

func testInvalidInput(t *testing.T, s Store) {
	ctx := ctxT(t)
	ok := text("85", "86", "ok")
	for _, tc := range []struct {
		name string
		m    NewMessage
	}{
		{"empty from", NewMessage{To: "86", Text: "x", Kind: KindText}},
		{"empty to", NewMessage{From: "85", Text: "x", Kind: KindText}},
		{"kind 0", NewMessage{From: "85", To: "86", Text: "x"}},
		{"kind 3", NewMessage{From: "85", To: "86", Text: "x", Kind: 3}},
		{"text too long", text("85", "86", strings.Repeat("a", MaxTextBytes+1))},
		{"invalid UTF-8", text("85", "86", "a\xc3\x28b")},
		{"NUL byte", text("85", "86", "a\x00b")},
		{"uid too long", text(strings.Repeat("8", maxUIDBytes+1), "86", "x")},
		{"cmid too long", NewMessage{From: "85", To: "86", Text: "x", Kind: KindText, CMID: strings.Repeat("c", maxCMIDBytes+1)}},
	} {
		// The valid first message must not be stored either.
		if _, err := s.SaveMessages(ctx, []NewMessage{ok, tc.m}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: SaveMessages = %v, want ErrInvalid", tc.name, err)
		}
	}
	if got := history(t, s, "85", "86", Page{}); len(got) != 0 {
		t.Fatalf("invalid batches stored %d messages", len(got))
	}
	if _, err := s.SaveMessages(ctx, []NewMessage{text("85", "86", strings.Repeat("a", MaxTextBytes))}); err != nil {
		t.Fatalf("text of MaxTextBytes: %v", err)
	}
	for _, p := range []Page{{Before: -1}, {After: -1}, {Limit: -1}} {
		if _, err := s.History(ctx, "85", "86", p); !errors.Is(err, ErrInvalid) {
			t.Errorf("History(%+v) = %v, want ErrInvalid", p, err)
		}
	}
	if _, err := s.History(ctx, "", "86", Page{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("History with empty uid = %v, want ErrInvalid", err)
	}
	if _, err := s.MarkRead(ctx, "", "85", 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarkRead with empty reader = %v, want ErrInvalid", err)
	}
	if _, err := s.MarkRead(ctx, "86", "85", -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarkRead with negative upTo = %v, want ErrInvalid", err)
	}
	if _, err := s.UnreadCounts(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("UnreadCounts(\"\") = %v, want ErrInvalid", err)
	}
}

// testConcurrentSave runs 16 senders of 50 messages each; every batch also
// retries a random run of messages (maybe another goroutine's, maybe not yet
// sent by its owner). Batches list cmid'd messages in one global order, as
// clients retry in sending order. Exactly one save of each (from, cmid) is
// not a duplicate, all agree on its id, and the store holds exactly the
// distinct messages.
func testConcurrentSave(t *testing.T, s Store) {
	const (
		goroutines = 16
		perG       = 50
		total      = goroutines * perG
		senders    = 8
	)
	msg := func(k int) NewMessage {
		return NewMessage{
			From: fmt.Sprintf("v%d", k%senders),
			To:   "agent",
			Text: fmt.Sprintf("message %d", k),
			Kind: KindText,
			CMID: fmt.Sprintf("c%04d", k),
		}
	}
	var (
		mu       sync.Mutex
		idOf     = make(map[int]int64) // k → id
		inserted = make(map[int]int)   // k → saves not flagged Duplicate
		plainIDs = make(map[int64]string)
	)
	ctx := ctxT(t)
	var g errgroup.Group
	for gi := range goroutines {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(gi), 42))
			for i := 0; i < perG; {
				var ks []int
				n := 1 + rng.IntN(8)
				for k := gi*perG + i; k < gi*perG+min(i+n, perG); k++ {
					ks = append(ks, k)
				}
				i += n
				if rng.IntN(2) == 0 {
					r := rng.IntN(total)
					for k := r; k < min(r+1+rng.IntN(4), total); k++ {
						ks = append(ks, k)
					}
				}
				slices.Sort(ks)
				var batch []NewMessage
				for _, k := range ks {
					batch = append(batch, msg(k))
				}
				if rng.IntN(4) == 0 {
					batch = append(batch, NewMessage{From: fmt.Sprintf("v%d", gi%senders), To: "agent",
						Text: fmt.Sprintf("plain from %d", gi), Kind: KindText})
				}
				saved, err := s.SaveMessages(ctx, batch)
				if err != nil {
					return err
				}
				mu.Lock()
				for j, sv := range saved {
					if j >= len(ks) {
						if sv.Duplicate {
							mu.Unlock()
							return fmt.Errorf("plain message flagged duplicate: %+v", sv)
						}
						plainIDs[sv.Message.ID] = sv.Message.Text
						continue
					}
					k := ks[j]
					if sv.Message.CMID != msg(k).CMID || sv.Message.From != msg(k).From || sv.Message.Text != msg(k).Text {
						mu.Unlock()
						return fmt.Errorf("save of %d returned %+v", k, sv.Message)
					}
					if id, ok := idOf[k]; ok && id != sv.Message.ID {
						mu.Unlock()
						return fmt.Errorf("message %d saved as %d and %d", k, id, sv.Message.ID)
					}
					idOf[k] = sv.Message.ID
					if !sv.Duplicate {
						inserted[k]++
					}
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for k := range total {
		if inserted[k] != 1 {
			t.Errorf("message %d saved as new %d times", k, inserted[k])
		}
	}
	var stored []Message
	for v := range senders {
		p := Page{Limit: 100}
		for {
			page := history(t, s, fmt.Sprintf("v%d", v), "agent", p)
			if len(page) == 0 {
				break
			}
			stored = append(stored, page...)
			p.Before = page[0].ID
		}
	}
	if len(stored) != total+len(plainIDs) {
		t.Fatalf("stored %d messages, want %d distinct + %d plain", len(stored), total, len(plainIDs))
	}
	seen := make(map[int64]bool)
	for _, m := range stored {
		if seen[m.ID] {
			t.Fatalf("message %d stored twice", m.ID)
		}
		seen[m.ID] = true
		if m.CMID == "" {
			if plainIDs[m.ID] != m.Text {
				t.Fatalf("unexpected plain message %+v", m)
			}
			continue
		}
		var k int
		if _, err := fmt.Sscanf(m.CMID, "c%04d", &k); err != nil || idOf[k] != m.ID || m.Text != msg(k).Text {
			t.Fatalf("stored %+v, saved as id %d", m, idOf[k])
		}
	}
}

func testCloseIdempotent(t *testing.T, s Store) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDemoUsers(t *testing.T) {
	want := map[string]struct {
		nick string
		role Role
	}{
		"85": {"Love violet life", RoleVisitor},
		"86": {"大美如斯", RoleAgent},
		"87": {"大金", RoleVisitor},
		"88": {"悦悦", RoleAgent},
		"89": {"雨薇", RoleVisitor},
	}
	users := DemoUsers()
	if len(users) != len(want) {
		t.Fatalf("%d demo users, want %d", len(users), len(want))
	}
	for _, u := range users {
		w, ok := want[u.UID]
		if !ok || u.Nickname != w.nick || u.Role != w.role || u.AvatarURL != "/avatars/"+u.UID+".svg" {
			t.Errorf("demo user %+v", u)
		}
		if err := checkUser(u); err != nil {
			t.Errorf("demo user %s: %v", u.UID, err)
		}
	}
}
