package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// The online checks of TestFaults. They bound waits, they do not measure
// speed.
const (
	// onlineWithin bounds how long after a fault the Push API may take to
	// report the truth about who is online: generously more than the one
	// lease it should take.
	onlineWithin = 5 * lease
	// onlineStable is how long the Push API must report the truth without
	// a break for the online state to count as correct.
	onlineStable = 500 * time.Millisecond
	// onlinePoll is how often the probe asks.
	onlinePoll = 50 * time.Millisecond
)

// onlineProbe asks a worker's Push API whether uids are online and compares
// the answers with the truth: the load's users that are bound at the moment
// (those reconnecting are left out), and fixed uids whose state the test
// sets. It asks in the background, from a fault on, until settle has seen
// the answers settle on the truth.
type onlineProbe struct {
	push  pushv1.PushServiceClient
	sides []*loadSide

	mu           sync.Mutex
	fixed        map[string]bool // uid → online
	from         time.Time       // the fault
	correctSince time.Time       // the first of the answers that have been the truth since; zero when the last was not
	last         string          // how the last wrong answer was wrong
	stop         func()          // ends the asking
}

// newOnlineProbe returns a probe asking push about sides and the fixed uids.
func newOnlineProbe(push pushv1.PushServiceClient, sides []*loadSide, fixed map[string]bool) *onlineProbe {
	return &onlineProbe{push: push, sides: sides, fixed: fixed, stop: func() {}}
}

// set records the truth about a fixed uid.
func (p *onlineProbe) set(uid string, online bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fixed[uid] = online
}

// watch starts asking every onlinePoll, in the background, about the fault
// at from; settle waits for the outcome. The asking ends at the latest when
// t does.
func (p *onlineProbe) watch(t *testing.T, from time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.mu.Lock()
	p.from, p.correctSince, p.last = from, time.Time{}, "never asked"
	p.stop = sync.OnceFunc(func() { cancel(); <-done })
	p.mu.Unlock()
	t.Cleanup(p.stop)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			asked := time.Now()
			m := p.mismatch(ctx)
			p.mu.Lock()
			switch {
			case m != "":
				p.correctSince, p.last = time.Time{}, m
			case p.correctSince.IsZero():
				p.correctSince = asked
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(onlinePoll):
			}
		}
	}()
}

// settle waits until the answers have been the truth for onlineStable
// without a break, stops asking and returns how long after the fault the
// first answer of that run came. It fails t when that takes longer than
// onlineWithin.
func (p *onlineProbe) settle(t *testing.T) time.Duration {
	t.Helper()
	for {
		p.mu.Lock()
		from, since, last := p.from, p.correctSince, p.last
		p.mu.Unlock()
		switch {
		case !since.IsZero() && time.Since(since) >= onlineStable:
			p.stop()
			return max(0, since.Sub(from))
		case time.Since(from) > onlineWithin+onlineStable:
			p.stop()
			t.Fatalf("the Push API did not report who is online correctly within %v of the fault; last wrong answer: %s", onlineWithin, last)
		}
		time.Sleep(onlinePoll / 5)
	}
}

// mismatch asks once and describes how the answer differs from the truth
// ("" when it does not).
func (p *onlineProbe) mismatch(ctx context.Context) string {
	p.mu.Lock()
	want := maps.Clone(p.fixed)
	p.mu.Unlock()
	for _, s := range p.sides {
		if s.bound.Load() {
			want[s.uid] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, frameTimeout)
	defer cancel()
	resp, err := p.push.IsUidOnline(ctx, &pushv1.IsUidOnlineRequest{Uids: slices.Sorted(maps.Keys(want))})
	if err != nil {
		return fmt.Sprintf("IsUidOnline: %v", err)
	}
	var wrong []string
	for _, uid := range slices.Sorted(maps.Keys(want)) {
		if got := resp.GetOnlineByUid()[uid]; got != want[uid] {
			wrong = append(wrong, fmt.Sprintf("%s online=%v, want %v", uid, got, want[uid]))
		}
	}
	// The truth may have changed during the call: a user reconnected.
	for _, s := range p.sides {
		if want[s.uid] && !s.bound.Load() {
			return ""
		}
	}
	return strings.Join(wrong, ", ")
}

// tally is what a fault run counts.
type tally struct {
	sent, attempts, acked int
	// How acknowledged messages reached the peer: as a text frame, through
	// history after a reconnect, or (when the save said is_read 0: it
	// waits as unread) through history at the end.
	live, caughtUp, unread int
	lost, duplicated       int
	// redelivered counts text frames the peer got again with a msg_id it
	// already had: at-least-once delivery across a crash (see report).
	redelivered           int
	reconnects, sayErrors int
	unacked               int
	problems              []string
	lostDetail, dupDetail []string
	unreadDetail          []string
}

// storedRow is one row of the messages table.
type storedRow struct {
	id       int64
	from, to string
	cmid     string
	body     string
}

// loadRows reads the messages of the given senders from the store.
func loadRows(ctx context.Context, dsn string, senders []string) (map[string][]storedRow, error) {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	q, _ := db.Query(ctx, `SELECT id, from_uid, to_uid, cmid, body FROM messages WHERE from_uid = ANY($1)`, senders)
	rows, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (storedRow, error) {
		var x storedRow
		err := r.Scan(&x.id, &x.from, &x.to, &x.cmid, &x.body)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("query messages: %w", err)
	}
	byKey := make(map[string][]storedRow) // by from/cmid
	for _, x := range rows {
		byKey[x.from+"/"+x.cmid] = append(byKey[x.from+"/"+x.cmid], x)
	}
	return byKey, nil
}

// count checks the load's results against the store: every acknowledged
// message is stored exactly once, with the msg_id of its save, and reached
// the peer as a text frame or through history; no text frame came twice;
// nothing else is stored.
func count(sides []*loadSide, rows map[string][]storedRow) tally {
	var t tally
	bySide := make(map[string]*loadSide, len(sides))
	for _, s := range sides {
		bySide[s.uid] = s
	}
	for _, s := range sides {
		peer := bySide[s.peer]
		t.sent += s.next
		t.attempts += len(s.attempts)
		t.acked += len(s.acked)
		t.unacked += len(s.pending)
		t.reconnects += s.reconnects
		t.sayErrors += len(s.sayErrors)
		t.duplicated += s.dupSaves
		t.problems = append(t.problems, s.problems...)
		ids := make(map[int64]string, len(s.acked)) // msg_id → cmid
		for cmid, id := range s.acked {
			if other, dup := ids[id]; dup {
				t.problems = append(t.problems, fmt.Sprintf("%s: %s and %s were both acknowledged as msg_id %d", s.uid, other, cmid, id))
			}
			ids[id] = cmid
			t.checkStored(s, cmid, id, rows[s.uid+"/"+cmid])
			t.checkReached(s, peer, cmid, id)
		}
		for id, n := range peer.live {
			if _, ok := ids[id]; !ok {
				t.problems = append(t.problems, fmt.Sprintf("%s got msg_id %d from %s, which %s never had acknowledged", peer.uid, id, s.uid, s.uid))
			}
			if n > 1 {
				t.redelivered += n - 1
				t.dupDetail = append(t.dupDetail, fmt.Sprintf("%s got msg_id %d (%s) %d times", peer.uid, id, ids[id], n))
			}
		}
	}
	for key, rs := range rows {
		from, cmid, _ := strings.Cut(key, "/")
		if s := bySide[from]; s != nil {
			if _, ok := s.acked[cmid]; !ok {
				t.problems = append(t.problems, fmt.Sprintf("the store holds %s (msg_id %d), never acknowledged", key, rs[0].id))
			}
		}
	}
	return t
}

// checkStored checks the rows of one acknowledged message.
func (t *tally) checkStored(s *loadSide, cmid string, id int64, rs []storedRow) {
	switch {
	case len(rs) == 0:
		t.lost++
		t.lostDetail = append(t.lostDetail, fmt.Sprintf("%s/%s (msg_id %d) is not in the store", s.uid, cmid, id))
	case len(rs) > 1:
		t.duplicated += len(rs) - 1
		t.dupDetail = append(t.dupDetail, fmt.Sprintf("%s/%s is stored %d times", s.uid, cmid, len(rs)))
	case rs[0].id != id || rs[0].to != s.peer || rs[0].body != s.textOf(cmid):
		t.problems = append(t.problems, fmt.Sprintf("%s/%s is stored as (msg_id %d, to %s, body %q), acknowledged as msg_id %d to %s",
			s.uid, cmid, rs[0].id, rs[0].to, rs[0].body, id, s.peer))
	}
}

// checkReached checks that the peer got one acknowledged message: as a
// text frame, or through history after a reconnect, or, when its save said
// is_read 0, through history at any time (it waits as unread). A message
// whose save said is_read 1 that the peer found only at the end, though it
// had not reconnected meanwhile, did not reach it: it counts as lost.
func (t *tally) checkReached(s, peer *loadSide, cmid string, id int64) {
	switch {
	case peer.live[id] > 0:
		t.live++
	case peer.caughtUp[id]:
		t.caughtUp++
	case peer.sweptUp[id] && !s.claimed[cmid]:
		t.unread++
		t.unreadDetail = append(t.unreadDetail, fmt.Sprintf("%s/%s (msg_id %d, %s)", s.uid, cmid, id, s.timeline(cmid)))
	case peer.sweptUp[id]:
		t.lost++
		t.lostDetail = append(t.lostDetail, fmt.Sprintf("%s/%s (msg_id %d): its save said is_read 1, but %s never got it "+
			"(it is stored: the final history fetch found it)", s.uid, cmid, id, peer.uid))
		return
	default:
		t.lost++
		t.lostDetail = append(t.lostDetail, fmt.Sprintf("%s/%s (msg_id %d) never reached %s, not even through history", s.uid, cmid, id, peer.uid))
		return
	}
	if got := peer.texts[id]; got != s.textOf(cmid) {
		t.problems = append(t.problems, fmt.Sprintf("%s got msg_id %d as %q, want %q", peer.uid, id, got, s.textOf(cmid)))
	}
}

// timeline lists when the say with cmid was sent and acknowledged.
func (s *loadSide) timeline(cmid string) string {
	var events []string
	for _, a := range s.attempts {
		if a.cmid == cmid {
			events = append(events, "sent "+a.at.Format("15:04:05.000"))
		}
	}
	for _, f := range s.saves {
		if f.cmid == cmid {
			events = append(events, "save "+f.at.Format("15:04:05.000"))
		}
	}
	return strings.Join(events, ", ")
}

// textOf returns the text of the say with cmid: uid-n is "say n from uid
// to peer".
func (s *loadSide) textOf(cmid string) string {
	n := strings.TrimPrefix(cmid, s.uid+"-")
	return fmt.Sprintf("say %s from %s to %s", n, s.uid, s.peer)
}

// figures is the parseable line of a fault's figures: the fault, then
// key=value pairs.
func (t tally) figures(fault string, online time.Duration, extra []string) string {
	fields := []string{
		"fault=" + fault,
		fmt.Sprintf("sent=%d", t.sent),
		fmt.Sprintf("acked=%d", t.acked),
		fmt.Sprintf("delivered=%d", t.live+t.caughtUp+t.unread),
		fmt.Sprintf("lost=%d", t.lost),
		fmt.Sprintf("duplicated=%d", t.duplicated),
		fmt.Sprintf("redelivered=%d", t.redelivered),
		fmt.Sprintf("online_s=%.2f", online.Seconds()),
		fmt.Sprintf("live=%d", t.live),
		fmt.Sprintf("catch_up=%d", t.caughtUp),
		fmt.Sprintf("unread=%d", t.unread),
		fmt.Sprintf("attempts=%d", t.attempts),
		fmt.Sprintf("say_errors=%d", t.sayErrors),
		fmt.Sprintf("reconnects=%d", t.reconnects),
	}
	return "FAULT " + strings.Join(append(fields, extra...), " ")
}

// report fails t for everything the tally found wrong, listing at most a
// few examples of each.
func (t tally) report(tb *testing.T) {
	tb.Helper()
	if t.unacked > 0 {
		tb.Errorf("%d says still unacknowledged after the drain", t.unacked)
	}
	if t.acked != t.sent {
		tb.Errorf("%d says sent, %d acknowledged", t.sent, t.acked)
	}
	if t.lost > 0 {
		tb.Errorf("%d acknowledged messages lost: %s", t.lost, examples(t.lostDetail))
	}
	if t.duplicated > 0 {
		tb.Errorf("%d duplicates: %s", t.duplicated, examples(t.dupDetail))
	}
	// A crash between a delivery and the record of it (batched, a few ms
	// later) lets a retry, once the message is older than the chat's
	// RetrySettle (2 s), deliver it twice — with the same msg_id, which
	// clients use to de-duplicate (the chat page does). Storage stays exactly once
	// (duplicated above). Graceful restarts must not redeliver: see
	// TestRollingRestart.
	if t.redelivered > 0 {
		tb.Logf("%d text frames delivered again with a msg_id the peer had: %s", t.redelivered, examples(t.dupDetail))
	}
	if len(t.problems) > 0 {
		tb.Errorf("%d problems: %s", len(t.problems), examples(t.problems))
	}
}

// examples joins the first few of xs, saying how many more there are.
func examples(xs []string) string {
	const show = 10
	if len(xs) <= show {
		return strings.Join(xs, "; ")
	}
	return strings.Join(xs[:show], "; ") + fmt.Sprintf("; and %d more", len(xs)-show)
}

// outage is the time the store was down in the PostgreSQL fault.
type outage struct {
	from, until time.Time
}

// outageMargin is how long after the store went down a save may still
// arrive (for a message stored just before), and how long before it comes
// back a say must have been sent for its error frame to be required.
const outageMargin = 300 * time.Millisecond

// checkOutage checks that, while the store was down, no save arrived and
// every say sent got an error frame naming its cmid; and that says were sent
// meanwhile.
func checkOutage(tb *testing.T, o outage, sides []*loadSide) {
	tb.Helper()
	var saves, unanswered []string
	tried := 0
	for _, s := range sides {
		for _, f := range s.saves {
			if f.at.After(o.from.Add(outageMargin)) && f.at.Before(o.until) {
				saves = append(saves, fmt.Sprintf("%s/%s %v after the stop", s.uid, f.cmid, f.at.Sub(o.from).Round(time.Millisecond)))
			}
		}
		for _, a := range s.attempts {
			if a.at.Before(o.from) || a.at.After(o.until.Add(-outageMargin)) {
				continue
			}
			tried++
			answered := slices.ContainsFunc(s.sayErrors, func(e frameAt) bool {
				return e.cmid == a.cmid && e.at.After(a.at) && e.at.Before(o.until)
			})
			if !answered {
				unanswered = append(unanswered, fmt.Sprintf("%s/%s sent %v after the stop", s.uid, a.cmid, a.at.Sub(o.from).Round(time.Millisecond)))
			}
		}
	}
	if tried == 0 {
		tb.Errorf("no say was sent while PostgreSQL was down")
	}
	if len(saves) > 0 {
		tb.Errorf("%d saves arrived while PostgreSQL was down: %s", len(saves), examples(saves))
	}
	if len(unanswered) > 0 {
		tb.Errorf("%d of %d says sent while PostgreSQL was down got no error frame naming their cmid before it came back: %s",
			len(unanswered), tried, examples(unanswered))
	}
}
