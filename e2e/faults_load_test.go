package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// The load of TestFaults. The waits bound, they do not measure speed.
const (
	// loadPairs pairs chat during each fault, the two users of a pair on
	// different gateways.
	loadPairs = 4
	// sayEvery is how often each user sends a new say: 20 a second.
	sayEvery = 50 * time.Millisecond
	// sayWindow is how many says a user leaves unacknowledged at most; it
	// sends no new one while the window is full.
	sayWindow = 10
	// ackTimeout is how long a say may go without a save before it is sent
	// again with the same cmid: its event may have died with a worker.
	ackTimeout = 1500 * time.Millisecond
	// errorBackoff is how long a user waits after a say's error frame
	// before it sends the say again.
	errorBackoff = 250 * time.Millisecond
	// bindTimeout is how long a new connection may go without its bound
	// frame before the user drops it and reconnects.
	bindTimeout = 3 * time.Second
	// redialDelay is the pause between failed connection attempts.
	redialDelay = 100 * time.Millisecond
	// historyRetry is the pause before a failed history request is made
	// again.
	historyRetry = 500 * time.Millisecond
)

// loadSide is one user of a pair chatting under load. It keeps a
// connection, reconnecting to either gateway after a drop and binding
// again; it sends its peer a say every sayEvery and resends every say not
// yet acknowledged, with the same cmid, until it gets the say's save. After
// a reconnect it catches up on its peer's messages through history.
//
// One goroutine runs it (run); the test signals the end of the load by
// closing drain and then sweep, and reads the results once done is closed.
type loadSide struct {
	uid, peer string
	urls      []string // the gateways' WebSocket URLs
	gw        int      // the gateway dialled next

	bound   atomic.Bool     // bound on its current connection
	start   <-chan struct{} // closed by the test: send says
	drain   chan struct{}   // closed by the test: no new says
	drained chan struct{}   // closed by run once draining and every say is acknowledged
	sweep   chan struct{}   // closed by the test: fetch the whole conversation, then stop
	done    chan struct{}   // closed when run has returned

	// Owned by run's goroutine until done is closed.
	cl         *client
	dials      int
	bindBy     time.Time     // the bound frame is due by then, while unbound
	hist       *historyFetch // the history being fetched, if any
	swept      bool          // the final history fetch is complete
	isDrained  bool
	next       int                    // says created
	pending    map[string]*pendingSay // by cmid: says not acknowledged yet
	acked      map[string]int64       // cmid → msg_id of its save
	claimed    map[string]bool        // cmids whose save said is_read 1: delivered
	attempts   []frameAt              // every say sent
	saves      []frameAt              // every save received
	sayErrors  []frameAt              // every error frame naming a say's cmid
	dupSaves   int                    // saves naming another msg_id than the first for their cmid
	live       map[int64]int          // msg_id → text frames from the peer
	texts      map[int64]string       // msg_id → the peer's text, live or from history
	caughtUp   map[int64]bool         // msg_ids of the peer's messages found catching up after a reconnect
	sweptUp    map[int64]bool         // msg_ids of the peer's messages found by the final history fetch
	maxSeen    int64                  // the newest msg_id of the peer's seen so far
	reconnects int
	problems   []string
}

// pendingSay is a say waiting for its save.
type pendingSay struct {
	seq  int
	cmid string
	text string
	due  time.Time // when to send it (again)
}

// frameAt is a frame naming a cmid, sent or received at a time.
type frameAt struct {
	cmid string
	at   time.Time
}

// newLoadSide returns the user uid chatting with peer, first connecting to
// gateway gw of urls, sending says once start is closed.
func newLoadSide(uid, peer string, urls []string, gw int, start <-chan struct{}) *loadSide {
	return &loadSide{
		uid: uid, peer: peer, urls: urls, gw: gw, start: start,
		drain: make(chan struct{}), drained: make(chan struct{}), sweep: make(chan struct{}), done: make(chan struct{}),
		pending: make(map[string]*pendingSay), acked: make(map[string]int64), claimed: make(map[string]bool),
		live: make(map[int64]int), texts: make(map[int64]string),
		caughtUp: make(map[int64]bool), sweptUp: make(map[int64]bool),
	}
}

// run chats until the final history fetch is complete or ctx ends.
func (s *loadSide) run(ctx context.Context) {
	defer close(s.done)
	defer s.hangUp()
	tick := time.NewTicker(sayEvery)
	defer tick.Stop()
	for !s.swept {
		if s.cl == nil && !s.dial() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(redialDelay):
			}
			continue
		}
		select {
		case <-ctx.Done():
			s.problemf("stopped before the end of the load: %v", ctx.Err())
			return
		case in := <-s.cl.in:
			s.receive(in)
		case now := <-tick.C:
			s.tick(now)
		}
	}
}

// problemf records something the server did wrong.
func (s *loadSide) problemf(format string, args ...any) {
	s.problems = append(s.problems, s.uid+": "+fmt.Sprintf(format, args...))
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// dial connects to the next gateway and sends a bind. On failure the
// gateway after it is next.
func (s *loadSide) dial() bool {
	cl, err := connect(s.urls[s.gw], fmt.Sprintf("%s@gateway%d", s.uid, s.gw))
	if err != nil {
		s.gw = (s.gw + 1) % len(s.urls)
		return false
	}
	s.dials++
	if s.dials > 1 {
		s.reconnects++
	}
	s.cl = cl
	s.bindBy = time.Now().Add(bindTimeout)
	if err := cl.writeJSON(map[string]string{"type": "bind", "client_id": cl.id, "frontId": s.uid}); err != nil {
		s.hangUp()
		return false
	}
	return true
}

// hangUp closes the connection, if any, and makes the other gateway the
// next; every unacknowledged say is sent again once the next connection is
// bound.
func (s *loadSide) hangUp() {
	if s.cl == nil {
		return
	}
	s.cl.closeNow()
	s.cl = nil
	s.bound.Store(false)
	s.gw = (s.gw + 1) % len(s.urls)
	if s.hist != nil {
		s.hist.inFlight = false // onBound starts it again
	}
}

// receive handles one result of reading the connection.
func (s *loadSide) receive(in inbound) {
	if in.err != nil {
		s.hangUp() // a drop: reconnect
		return
	}
	f, err := decodeInbound(in)
	if err != nil {
		s.problemf("%v", err)
		s.hangUp()
		return
	}
	now := time.Now()
	switch f.typ() {
	case "bound":
		s.onBound(f, now)
	case "save":
		s.onSave(f, now)
	case "text":
		s.onText(f)
	case "history":
		s.onHistory(f, now)
	case "error":
		s.onError(f, now)
	default:
		s.problemf("unexpected frame %s", f.raw)
	}
}

// onBound starts chatting on a new connection: unacknowledged says go out
// again at once, and after a reconnect history catches up on what the peer
// sent meanwhile.
func (s *loadSide) onBound(f frame, now time.Time) {
	if f.str("frontId") != s.uid || s.bound.Load() {
		s.problemf("unexpected bound frame %s", f.raw)
		return
	}
	s.bound.Store(true)
	for _, p := range s.pending {
		p.due = now
	}
	switch {
	case s.hist != nil && s.hist.final:
		s.hist = &historyFetch{final: true, due: now} // start over
	case s.hist != nil || s.reconnects > 0:
		s.hist = &historyFetch{after: s.maxSeen, due: now}
	}
}

// onSave records the acknowledgement of a say.
func (s *loadSide) onSave(f frame, now time.Time) {
	cmid := f.str("cmid")
	id, ok := jsonInt(f.fields["msg_id"])
	if !ok || id <= 0 || f.str("frontId") != s.uid || f.str("toId") != s.peer {
		s.problemf("bad save frame %s", f.raw)
		return
	}
	s.saves = append(s.saves, frameAt{cmid: cmid, at: now})
	if string(f.fields["is_read"]) == "1" {
		s.claimed[cmid] = true
	}
	if first, ok := s.acked[cmid]; ok {
		if first != id {
			s.dupSaves++
			s.problemf("save of %s names msg_id %d, an earlier one %d: stored twice", cmid, id, first)
		}
		return
	}
	p, ok := s.pending[cmid]
	if !ok {
		s.problemf("save %s names a cmid never sent", f.raw)
		return
	}
	if f.str("raw") != p.text {
		s.problemf("save %s of %s: raw is not %q", f.raw, cmid, p.text)
	}
	s.acked[cmid] = id
	delete(s.pending, cmid)
}

// onText records a message from the peer.
func (s *loadSide) onText(f frame) {
	id, ok := jsonInt(f.fields["msg_id"])
	if !ok || id <= 0 || f.str("frontId") != s.peer || f.str("toId") != s.uid {
		s.problemf("bad text frame %s", f.raw)
		return
	}
	s.live[id]++
	s.texts[id] = f.str("raw")
	s.maxSeen = max(s.maxSeen, id)
}

// onError handles an error frame: a say that was not stored is sent again
// after errorBackoff, a failed history request is made again, and a failed
// bind is answered with a reconnect. Any other error is a problem.
func (s *loadSide) onError(f frame, now time.Time) {
	code, ref, cmid := f.str("code"), f.str("ref"), f.str("cmid")
	switch {
	case ref == "say" && code == "store_failed" && cmid != "":
		s.sayErrors = append(s.sayErrors, frameAt{cmid: cmid, at: now})
		if p, ok := s.pending[cmid]; ok {
			p.due = now.Add(errorBackoff)
		} else if _, ok := s.acked[cmid]; !ok {
			s.problemf("error frame %s names a cmid never sent", f.raw)
		}
	case ref == "history" && code == "store_failed" && s.hist != nil && s.hist.inFlight:
		s.hist.inFlight = false
		s.hist.due = now.Add(historyRetry)
	case ref == "bind" && (code == "unavailable" || code == "store_failed") && !s.bound.Load():
		s.hangUp()
	default:
		s.problemf("unexpected error frame %s", f.raw)
	}
}

// tick sends what is due: a new say, the says whose save is late, the next
// history request; and it notices the phases of the end of the load.
func (s *loadSide) tick(now time.Time) {
	if !s.bound.Load() {
		if now.After(s.bindBy) {
			s.hangUp() // the bind died with a worker, or the gateway has none
		}
		return
	}
	if closed(s.sweep) && s.hist == nil && !s.swept {
		s.hist = &historyFetch{final: true, due: now}
	}
	// A request in flight past its due time lost its answer (its event
	// died with a worker): it is made again.
	if s.hist != nil && !now.Before(s.hist.due) {
		if err := s.cl.writeJSON(s.hist.request(s.peer)); err != nil {
			s.hangUp()
			return
		}
		s.hist.inFlight = true
		s.hist.due = now.Add(2 * ackTimeout)
	}
	draining := closed(s.drain)
	if closed(s.start) && !draining && len(s.pending) < sayWindow {
		s.newSay(now)
	}
	if draining && len(s.pending) == 0 && !s.isDrained {
		s.isDrained = true
		close(s.drained)
	}
	s.sendDue(now)
}

// newSay creates the next say; sendDue sends it.
func (s *loadSide) newSay(now time.Time) {
	n := s.next
	s.next++
	cmid := fmt.Sprintf("%s-%d", s.uid, n)
	s.pending[cmid] = &pendingSay{seq: n, cmid: cmid, text: fmt.Sprintf("say %d from %s to %s", n, s.uid, s.peer), due: now}
}

// sendDue sends every pending say that is due, oldest first.
func (s *loadSide) sendDue(now time.Time) {
	var due []*pendingSay
	for _, p := range s.pending {
		if !now.Before(p.due) {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(a, b *pendingSay) int { return a.seq - b.seq })
	for _, p := range due {
		if err := s.cl.writeJSON(sayRequest(s.uid, s.peer, p.text, p.cmid)); err != nil {
			s.hangUp()
			return
		}
		p.due = now.Add(ackTimeout)
		s.attempts = append(s.attempts, frameAt{cmid: p.cmid, at: now})
	}
}

// historyFetch is a history being fetched page by page: forward from a
// msg_id to catch up after a reconnect, or, for the final fetch, back from
// the newest message to the first.
type historyFetch struct {
	final    bool      // the whole conversation, paging back
	after    int64     // catching up: the msg_id after which to fetch
	before   int64     // paging back: the oldest msg_id fetched so far (0: none yet)
	inFlight bool      // a request is waiting for its answer
	due      time.Time // when to send the next request, or the last again
}

// request is the next history request, for the conversation with peer.
func (h *historyFetch) request(peer string) map[string]any {
	req := map[string]any{"type": "history", "toId": peer, "limit": historyPage}
	switch {
	case !h.final && h.after > 0:
		req["after"] = h.after
	case h.before > 0:
		req["before"] = h.before
	}
	return req
}

// historyItem is one message of a history frame.
type historyItem struct {
	MsgID   int64  `json:"msg_id"`
	FrontID string `json:"frontId"`
	ToID    string `json:"toId"`
	Raw     string `json:"raw"`
}

// onHistory records the peer's messages of a history page and asks for the
// next page, if there is more.
func (s *loadSide) onHistory(f frame, now time.Time) {
	h := s.hist
	var page struct {
		ToID     string        `json:"toId"`
		Messages []historyItem `json:"messages"`
		More     bool          `json:"more"`
	}
	if err := json.Unmarshal([]byte(f.raw), &page); err != nil || page.ToID != s.peer {
		s.problemf("bad history frame %s: %v", f.raw, err)
		return
	}
	if h == nil || !h.inFlight {
		return // the late answer of a request made again
	}
	h.inFlight = false
	for _, m := range page.Messages {
		if m.FrontID != s.peer {
			continue // one of its own
		}
		if m.ToID != s.uid || m.MsgID <= 0 {
			s.problemf("history frame %s: message %d is not from %s to %s", f.raw, m.MsgID, s.peer, s.uid)
			continue
		}
		if h.final {
			s.sweptUp[m.MsgID] = true
		} else {
			s.caughtUp[m.MsgID] = true
		}
		s.texts[m.MsgID] = m.Raw
		s.maxSeen = max(s.maxSeen, m.MsgID)
	}
	switch {
	case page.More && len(page.Messages) > 0 && (h.final || h.after == 0):
		h.before, h.due = page.Messages[0].MsgID, now
	case page.More && len(page.Messages) > 0:
		h.after, h.due = page.Messages[len(page.Messages)-1].MsgID, now
	case h.final:
		s.swept = true
		s.hist = nil
	default:
		s.hist = nil
	}
}
