package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// The load of TestPersistence.
const (
	// persistPairs sender/receiver pairs chat at once, persistPerPair
	// messages each: persistPairs*persistPerPair messages in all.
	persistPairs   = 8
	persistPerPair = 125
	// persistOffline messages go to a uid that is not connected.
	persistOffline = 50
	// persistRetryPercent of the says are sent twice with the same cmid:
	// half of them at once, half after the first save came back.
	persistRetryPercent = 20
	// historyPage is the page size the test asks history for (the most
	// the server allows).
	historyPage = 50
	// deliveryWait bounds how long a receiver may take to get every text
	// after its sender got every save. It bounds a wait, it does not
	// measure speed.
	deliveryWait = 15 * time.Second
)

// TestPersistence checks that messages are stored once, delivered once and
// survive a restart of every process, on a real cluster: Redis, PostgreSQL,
// a register, two gateways and two workers.
//
// Eight pairs chat at once, each sender on one gateway and its receiver on
// the other: 1,000 says, each with a unique cmid, a fifth of them sent a
// second time with the same cmid (at once, or after the first save) as a
// client retries. Every say must get a save, a retry the same msg_id; every
// message must reach its receiver exactly once; PostgreSQL must hold
// exactly 1,000 rows for those senders, with the ids the saves named. A
// ninth sender writes 50 messages to a uid that is not connected.
//
// Then every process is stopped with SIGTERM and started again on the same
// Redis, PostgreSQL and ports. Each receiver binds with its 125 messages
// unread; history pages back through each conversation, oldest first, with
// the same ids. The offline uid binds with 50 unread, finds them in its
// history, reads them in two steps (receipts to both sides) and binds again
// with nothing unread.
func TestPersistence(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("retry seed %d", seed)

	pairs := make([]*chatPair, persistPairs)
	for i := range pairs {
		p := &chatPair{from: fmt.Sprint(1001 + 2*i), to: fmt.Sprint(1002 + 2*i), isRead: "1"}
		// Pair i sends from gateway i%2 to the other gateway.
		p.sender = c.dial(t, i%2, "sender"+p.from)
		p.receiver = c.dial(t, 1-i%2, "receiver"+p.to)
		checkUnread(t, p.sender.name, p.sender.bind(p.from), map[string]int{})
		checkUnread(t, p.receiver.name, p.receiver.bind(p.to), map[string]int{})
		pairs[i] = p
	}
	// 2001 never connects before the restart.
	offline := &chatPair{from: "2000", to: "2001", isRead: "0"}
	offline.sender = c.dial(t, 0, "sender2000")
	checkUnread(t, offline.sender.name, offline.sender.bind(offline.from), map[string]int{})

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range append(slices.Clone(pairs), offline) {
		n := persistPerPair
		if p == offline {
			n = persistOffline
		}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		g.Go(func() error { return p.run(gctx, n, rng) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	retries, retriesUnread := 0, 0
	for _, p := range append(slices.Clone(pairs), offline) {
		retries += p.retries
		retriesUnread += p.retriesUnread
	}
	t.Logf("%d says (%d of them retries, %d of those acknowledged with is_read 0 as they raced the first say) saved in %v",
		persistPairs*persistPerPair+persistOffline+retries, retries, retriesUnread, time.Since(start).Round(time.Millisecond))

	// Every message reaches its receiver exactly once.
	for _, p := range pairs {
		if err := p.awaitTexts(deliveryWait); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * quietPeriod) // room for a late duplicate
	for _, p := range pairs {
		p.checkDelivered(t) // on failure, go on: the rest holds regardless
	}
	expectNothing(t, offline.sender)

	// Ids are unique across conversations and increase in sending order.
	owner := make(map[int64]string)
	for _, p := range append(slices.Clone(pairs), offline) {
		for k, m := range p.sent {
			if prev, dup := owner[m.msgID]; dup {
				t.Errorf("msg_id %d names both %s and %s/%s", m.msgID, prev, p.from, m.cmid)
			}
			owner[m.msgID] = p.from + "/" + m.cmid
			if k > 0 && m.msgID <= p.sent[k-1].msgID {
				t.Errorf("%s: %s has msg_id %d, not above the previous message's %d", p.from, m.cmid, m.msgID, p.sent[k-1].msgID)
			}
		}
	}

	// PostgreSQL holds exactly the messages the saves named, once each.
	db, err := pgx.Connect(ctx, c.pg)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	rowsOK := checkRows(t, db, pairs, true)
	if !checkRows(t, db, []*chatPair{offline}, false) || !rowsOK {
		t.FailNow()
	}

	// Restart everything on the same Redis and PostgreSQL.
	for _, p := range append(slices.Clone(pairs), offline) {
		p.sender.closeNow()
		if p.receiver != nil {
			p.receiver.closeNow()
		}
	}
	c.restart()

	newest := slices.Max(slices.Collect(maps.Keys(owner)))
	for i, p := range pairs {
		r := c.dial(t, 1-i%2, "receiver"+p.to+"'")
		s := c.dial(t, i%2, "sender"+p.from+"'")
		// Delivered is not read: all the pair's messages are unread.
		checkUnread(t, r.name, r.bind(p.to), map[string]int{p.from: persistPerPair})
		checkUnread(t, s.name, s.bind(p.from), map[string]int{})
		// History is the same from either side: the receiver asks in even
		// pairs, the sender in odd ones.
		asker, peer := r, p.from
		if i%2 == 1 {
			asker, peer = s, p.to
		}
		got := fetchHistory(t, asker, peer, historyPage)
		p.checkHistory(t, asker.name, got, 0)
		// The restarted cluster chats on, numbering after what it stored.
		if id := chat(t, s, p.from, r, p.to, "after the restart"); id <= newest {
			t.Errorf("%s: a message after the restart has msg_id %d, not above %d", s.name, id, newest)
		}
		expectNothing(t, r, s)
		r.closeNow()
		s.closeNow()
	}

	// The offline uid finds its messages unread, and in its history.
	s := c.dial(t, 0, "sender2000'")
	checkUnread(t, s.name, s.bind("2000"), map[string]int{})
	r := c.dial(t, 1, "receiver2001")
	checkUnread(t, r.name, r.bind("2001"), map[string]int{"2000": persistOffline})
	offline.checkHistory(t, r.name, fetchHistory(t, r, "2000", historyPage), 0)

	// Reading up to the 20th leaves 30 unread; both sides get a receipt.
	upTo := offline.sent[19].msgID
	r.send(map[string]any{"type": "read", "toId": "2000", "upTo": upTo})
	for _, cl := range []*client{r, s} {
		checkReceipt(t, cl, "2001", "2000", upTo)
	}
	n := c.dial(t, 0, "receiver2001'")
	checkUnread(t, n.name, n.bind("2001"), map[string]int{"2000": persistOffline - 20})
	n.closeNow()

	// Reading the rest leaves nothing unread.
	upTo = offline.sent[len(offline.sent)-1].msgID
	r.send(map[string]any{"type": "read", "toId": "2000", "upTo": upTo})
	for _, cl := range []*client{r, s} {
		checkReceipt(t, cl, "2001", "2000", upTo)
	}
	n = c.dial(t, 0, "receiver2001''")
	checkUnread(t, n.name, n.bind("2001"), map[string]int{})
	offline.checkHistory(t, n.name, fetchHistory(t, n, "2000", historyPage), 1)
	expectNothing(t, r, s, n)

	// Reading again marks nothing: only the asker gets the receipt.
	r.send(map[string]any{"type": "read", "toId": "2000", "upTo": upTo})
	checkReceipt(t, r, "2001", "2000", upTo)
	expectNothing(t, r, s, n)

	var unread int
	err = db.QueryRow(ctx, `SELECT count(*) FROM messages WHERE from_uid = '2000' AND (read_at IS NULL OR NOT delivered)`).Scan(&unread)
	if err != nil || unread != 0 {
		t.Errorf("postgres: %d messages from 2000 unread or undelivered after the reads (err %v), want 0", unread, err)
	}
}

// chatPair is a sender and its receiver (nil when offline) in
// TestPersistence.
type chatPair struct {
	from, to         string
	sender, receiver *client
	isRead           string // the is_read every first save must carry
	sent             []sentMessage
	retries          int
	retriesUnread    int     // retries whose save said is_read 0 where the first said 1
	texts            []frame // what the receiver got
}

// sentMessage is a say and the msg_id its save carried.
type sentMessage struct {
	cmid  string
	text  string
	msgID int64
	retry string // "", "at once" or "after save"
}

// run sends n says from p's sender, one at a time, each waiting for its
// save; about persistRetryPercent of them are sent a second time with the
// same cmid. It collects what the receiver gets meanwhile. It runs on a
// goroutine of its own: it fails no test, it returns what went wrong.
func (p *chatPair) run(ctx context.Context, n int, rng *rand.Rand) error {
	for k := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := sentMessage{cmid: fmt.Sprintf("%s-%03d", p.from, k), text: fmt.Sprintf("message %d from %s to %s", k, p.from, p.to)}
		req := sayRequest(p.from, p.to, m.text, m.cmid)
		want := plain("save", p.sender.id, p.from, p.to, m.text, p.isRead)
		want.cmid = m.cmid
		retry := rng.IntN(100) < persistRetryPercent
		atOnce := retry && rng.IntN(2) == 0
		if err := p.sender.writeJSON(req); err != nil {
			return err
		}
		if atOnce {
			// The retry leaves before the first save is back.
			if err := p.sender.writeJSON(req); err != nil {
				return err
			}
		}
		id, err := p.awaitSave(want)
		if err != nil {
			return err
		}
		m.msgID, want.msgID = id, id
		if retry {
			p.retries++
			m.retry = "after save"
			if atOnce {
				m.retry = "at once"
			}
			if !atOnce {
				if err := p.sender.writeJSON(req); err != nil {
					return err
				}
			}
			// The retry gets the first save again: the same msg_id. Its
			// is_read may be 0 where the first said 1: a retry that a
			// worker's drain moved to the other worker can come before the
			// first say's delivery record (written in batches), and then
			// does not know; it never delivers again (checked below).
			if err := p.awaitRetrySave(want); err != nil {
				return fmt.Errorf("retry of %s: %w", m.cmid, err)
			}
		}
		p.sent = append(p.sent, m)
	}
	return p.drain()
}

// awaitSave waits for the sender's next frame, which must be the save want
// describes, and returns its msg_id.
func (p *chatPair) awaitSave(want message) (int64, error) {
	f, err := p.nextSave(want)
	if err != nil {
		return 0, err
	}
	_, id, err := messageProblem(f, want)
	if err != nil {
		return 0, fmt.Errorf("%s: the save of %s: %w", p.sender.name, want.cmid, err)
	}
	return id, nil
}

// awaitRetrySave waits for the save of a retry: the save want describes,
// or the same with is_read 0.
func (p *chatPair) awaitRetrySave(want message) error {
	f, err := p.nextSave(want)
	if err != nil {
		return err
	}
	_, _, err = messageProblem(f, want)
	if err != nil && want.isRead == "1" {
		unknown := want
		unknown.isRead = "0"
		if _, _, err0 := messageProblem(f, unknown); err0 == nil {
			p.retriesUnread++
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("%s: the save of %s: %w", p.sender.name, want.cmid, err)
	}
	return nil
}

// nextSave waits for the sender's next frame, the save of want.cmid, and
// collects what the receiver got meanwhile.
func (p *chatPair) nextSave(want message) (frame, error) {
	f, err := p.sender.nextFrame(frameTimeout)
	if err != nil {
		return f, fmt.Errorf("waiting for the save of %s: %w", want.cmid, err)
	}
	return f, p.drain()
}

// drain collects what the receiver got so far, so that its connection is
// read while the sender sends.
func (p *chatPair) drain() error {
	if p.receiver == nil {
		return nil
	}
	fs, err := p.receiver.pendingFrames()
	p.texts = append(p.texts, fs...)
	return err
}

// awaitTexts reads the receiver until it got a frame for every message
// sent, or timeout passes.
func (p *chatPair) awaitTexts(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	distinct := func() int {
		seen := make(map[string]bool)
		for _, f := range p.texts {
			seen[f.str("raw")] = true
		}
		return len(seen)
	}
	for distinct() < len(p.sent) {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s: got %d of %d messages within %v of the last save", p.receiver.name, distinct(), len(p.sent), timeout)
		}
		f, err := p.receiver.nextFrame(left)
		if err != nil {
			return fmt.Errorf("%s: got %d of %d messages: %w", p.receiver.name, distinct(), len(p.sent), err)
		}
		p.texts = append(p.texts, f)
	}
	return nil
}

// checkDelivered checks that the receiver got every message exactly once,
// each a text frame with the msg_id of its save, and nothing else.
func (p *chatPair) checkDelivered(t *testing.T) {
	t.Helper()
	if err := p.drain(); err != nil {
		t.Fatal(err)
	}
	index := make(map[string]int, len(p.sent))
	for k, m := range p.sent {
		index[m.text] = k
	}
	counts := make([]int, len(p.sent))
	var problems []string
	for _, f := range p.texts {
		k, ok := index[f.str("raw")]
		if !ok {
			problems = append(problems, "unexpected frame "+f.raw)
			continue
		}
		m := p.sent[k]
		want := plain("text", p.sender.id, p.from, p.to, m.text, "")
		want.msgID = m.msgID
		if _, _, err := messageProblem(f, want); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		counts[k]++
	}
	var dups, missing []string
	retried := make(map[string]int) // retries by kind
	dupRetried := make(map[string]int)
	for k, n := range counts {
		m := p.sent[k]
		retried[m.retry]++
		switch {
		case n == 0:
			missing = append(missing, m.cmid)
		case n > 1:
			dupRetried[m.retry]++
			dups = append(dups, fmt.Sprintf("%s (msg_id %d, retry %q) %d times", m.cmid, m.msgID, m.retry, n))
		}
	}
	if len(dups) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d messages delivered more than once "+
			"(of those retried at once %d of %d, retried after the save %d of %d, never retried %d of %d): %s",
			len(dups), len(p.sent), dupRetried["at once"], retried["at once"], dupRetried["after save"], retried["after save"],
			dupRetried[""], retried[""], strings.Join(dups, ", ")))
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d messages never delivered: %s",
			len(missing), len(p.sent), strings.Join(missing, ", ")))
	}
	if len(problems) > 0 {
		t.Errorf("%s (from %s, %d retries): %s", p.receiver.name, p.from, p.retries, strings.Join(problems, "\n\t"))
	}
}

// checkRows checks that the messages table holds exactly the pairs'
// messages from their senders, once each, with the ids their saves named.
// When delivered, every one of them must be marked delivered within a few
// seconds (the mark is written in the background); otherwise none may be.
// It reports whether all was well.
func checkRows(t *testing.T, db *pgx.Conn, pairs []*chatPair, delivered bool) bool {
	t.Helper()
	ok := true
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		ok = false
	}
	ctx := context.Background()
	var senders []string
	want := make(map[string]sentMessage) // by from/cmid
	to := make(map[string]string)
	for _, p := range pairs {
		senders = append(senders, p.from)
		to[p.from] = p.to
		for _, m := range p.sent {
			want[p.from+"/"+m.cmid] = m
		}
	}
	type row struct {
		id                  int64
		from, to, body      string
		cmid                string
		kind                int16
		delivered, readDone bool
	}
	var rows []row
	err := retryUntil(ctx, 10*time.Second, 100*time.Millisecond, func() error {
		// A delivery is the delivered column (set by reads) or a row of
		// message_deliveries (migration 0003).
		q, _ := db.Query(ctx, `SELECT id, from_uid, to_uid, body, cmid, kind,
			delivered OR EXISTS (SELECT 1 FROM message_deliveries d WHERE d.id = messages.id), read_at IS NOT NULL
			FROM messages WHERE from_uid = ANY($1) ORDER BY id`, senders)
		var err error
		rows, err = pgx.CollectRows(q, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.from, &x.to, &x.body, &x.cmid, &x.kind, &x.delivered, &x.readDone)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, x := range rows {
			if x.delivered != delivered {
				return fmt.Errorf("message %d (%s/%s) has delivered = %v", x.id, x.from, x.cmid, x.delivered)
			}
		}
		return nil
	})
	if err != nil {
		errorf("postgres: messages from %v: %v", senders, err)
	}
	if len(rows) != len(want) {
		errorf("postgres: %d messages from %v, want exactly %d", len(rows), senders, len(want))
	}
	seen := make(map[string]bool)
	for _, x := range rows {
		key := x.from + "/" + x.cmid
		m, ok := want[key]
		switch {
		case !ok:
			errorf("postgres: unexpected message %d from %s with cmid %q", x.id, x.from, x.cmid)
		case seen[key]:
			errorf("postgres: message %s stored twice (again as %d)", key, x.id)
		case x.id != m.msgID || x.to != to[x.from] || x.body != m.text || x.kind != 1 || x.readDone:
			errorf("postgres: message %s is (id %d, to %s, body %q, kind %d, read %v), want (id %d, to %s, body %q, kind 1, unread)",
				key, x.id, x.to, x.body, x.kind, x.readDone, m.msgID, to[x.from], m.text)
		}
		seen[key] = true
	}
	return ok
}

// historyMsg is one message of a history frame.
type historyMsg struct {
	raw                       string
	msgID                     int64
	frontID, toID, data, text string
	kind, isRead              int64
}

// fetchHistory pages back through cl's whole conversation with peer, limit
// messages a request, checking each history frame exactly, and returns the
// messages oldest first.
func fetchHistory(t *testing.T, cl *client, peer string, limit int) []historyMsg {
	t.Helper()
	var all []historyMsg
	var before int64
	for page := 1; ; page++ {
		if page > 100 {
			t.Fatalf("%s: history with %s has more than 100 pages", cl.name, peer)
		}
		req := map[string]any{"type": "history", "toId": peer, "limit": limit}
		if before != 0 {
			req["before"] = before
		}
		cl.send(req)
		f := cl.expect("history")
		if got, want := f.keys(), []string{"messages", "more", "toId", "type"}; !slices.Equal(got, want) {
			t.Fatalf("%s: history frame %s has fields %v, want %v", cl.name, f.raw, got, want)
		}
		var more bool
		var items []map[string]json.RawMessage
		if f.str("toId") != peer || json.Unmarshal(f.fields["more"], &more) != nil || json.Unmarshal(f.fields["messages"], &items) != nil || items == nil {
			t.Fatalf("%s: history frame %s: want toId %q, a boolean more and an array of messages", cl.name, f.raw, peer)
		}
		if len(items) > limit || (more && len(items) != limit) || len(items) == 0 && before != 0 {
			t.Fatalf("%s: history page %d (before %d) has %d messages and more = %v, limit %d", cl.name, page, before, len(items), more, limit)
		}
		msgs := make([]historyMsg, len(items))
		for i, it := range items {
			m := &msgs[i]
			b, _ := json.Marshal(it)
			m.raw = string(b)
			f := frame{raw: m.raw, fields: it}
			if got, want := f.keys(), []string{"data", "date", "frontId", "is_read", "kind", "msg_id", "raw", "toId"}; !slices.Equal(got, want) {
				t.Fatalf("%s: history message %s has fields %v, want %v", cl.name, m.raw, got, want)
			}
			var ok1, ok2, ok3 bool
			m.msgID, ok1 = jsonInt(it["msg_id"])
			m.kind, ok2 = jsonInt(it["kind"])
			m.isRead, ok3 = jsonInt(it["is_read"])
			if !ok1 || !ok2 || !ok3 || m.msgID <= 0 {
				t.Fatalf("%s: history message %s: msg_id, kind and is_read must be integers, msg_id positive", cl.name, m.raw)
			}
			m.frontID, m.toID, m.data, m.text = f.str("frontId"), f.str("toId"), f.str("data"), f.str("raw")
			if _, err := checkDate(f.str("date")); err != nil {
				t.Fatalf("%s: history message %s: %v", cl.name, m.raw, err)
			}
			if i > 0 && m.msgID <= msgs[i-1].msgID {
				t.Fatalf("%s: history page %s is not oldest first", cl.name, f.raw)
			}
		}
		if len(msgs) > 0 && before != 0 && msgs[len(msgs)-1].msgID >= before {
			t.Fatalf("%s: history before %d returned msg_id %d", cl.name, before, msgs[len(msgs)-1].msgID)
		}
		all = append(msgs, all...)
		if !more {
			return all
		}
		before = msgs[0].msgID
	}
}

// checkHistory checks that got is exactly p's messages, oldest first, with
// their ids, and is_read isRead.
func (p *chatPair) checkHistory(t *testing.T, who string, got []historyMsg, isRead int64) {
	t.Helper()
	if len(got) != len(p.sent) {
		t.Fatalf("%s: history of %s→%s has %d messages, want %d", who, p.from, p.to, len(got), len(p.sent))
	}
	for k, m := range p.sent {
		h := got[k]
		if h.msgID != m.msgID || h.frontID != p.from || h.toID != p.to || h.text != m.text || h.data != m.text || h.kind != 1 || h.isRead != isRead {
			t.Fatalf("%s: history message %d of %s→%s is %s, want msg_id %d, frontId %s, toId %s, raw and data %q, kind 1, is_read %d",
				who, k, p.from, p.to, h.raw, m.msgID, p.from, p.to, m.text, isRead)
		}
	}
}

// checkReceipt reads a receipt frame and checks that it is exactly the
// receipt of reader reading peer's messages up to upTo.
func checkReceipt(t *testing.T, cl *client, reader, peer string, upTo int64) {
	t.Helper()
	f := cl.expect("receipt")
	if got, want := f.keys(), []string{"frontId", "toId", "type", "upTo"}; !slices.Equal(got, want) {
		t.Fatalf("%s: receipt frame %s has fields %v, want %v", cl.name, f.raw, got, want)
	}
	if n, ok := jsonInt(f.fields["upTo"]); !ok || n != upTo || f.str("frontId") != reader || f.str("toId") != peer {
		t.Fatalf("%s: receipt frame %s, want frontId %s, toId %s and upTo %d", cl.name, f.raw, reader, peer, upTo)
	}
}
