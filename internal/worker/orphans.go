package worker

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"

	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// A gateway that dies cannot report its clients' closes. Each link
// therefore remembers the clients whose events it carried (connect,
// message, close), and when the register drops the gateway the worker
// reports a close for each client still remembered, marked GatewayLost.
// A gateway that leaves gracefully closes its clients first, so nothing is
// left to report. Only the worker a client's events went to remembers it:
// every close is reported once. A client that stayed silent since its
// events moved to this worker (its previous worker left) is not
// remembered, and gets no close when its gateway dies.

// retireGrace bounds how long a link to a gateway the register dropped
// stays open to carry the gateway's last close events.
const retireGrace = 15 * time.Second

// clientMemo is what a link remembers of one client: what its close event
// must carry.
type clientMemo struct {
	uid     string
	session []byte
	version uint64 // of uid and session
}

// clientMemos is a link's set of remembered clients.
type clientMemos struct {
	mu sync.Mutex
	m  map[string]clientMemo
}

// note records what ev says about its client.
func (s *clientMemos) note(ev *linkv1.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, closed := ev.GetKind().(*linkv1.Event_Closed); closed {
		delete(s.m, ev.GetClientId())
		return
	}
	if s.m == nil {
		s.m = make(map[string]clientMemo)
	}
	if old, ok := s.m[ev.GetClientId()]; ok && old.version == ev.GetStateVersion() {
		return // known, and unchanged since
	}
	s.m[ev.GetClientId()] = clientMemo{uid: ev.GetUid(), session: ev.GetSession(), version: ev.GetStateVersion()}
}

// ids returns the remembered client ids.
func (s *clientMemos) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for id := range s.m {
		out = append(out, id)
	}
	return out
}

// forget drops the clients among ids that are not in alive.
func (s *clientMemos) forget(ids []string, alive map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if !alive[id] {
			delete(s.m, id)
		}
	}
}

// take empties the set and returns what it held.
func (s *clientMemos) take() map[string]clientMemo {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	s.m = nil
	return m
}

// merge adds the clients of m.
func (s *clientMemos) merge(m map[string]clientMemo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]clientMemo, len(m))
	}
	for id, c := range m {
		if _, ok := s.m[id]; !ok {
			s.m[id] = c
		}
	}
}

// prune forgets the remembered clients the gateway no longer holds: after
// a link broke and came back, closes that happened meanwhile went
// elsewhere.
func (l *gatewayLink) prune(ctx context.Context) {
	ids := l.clients.ids()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, l.w.cfg.CallTimeout)
	defer cancel()
	r, err := l.call(ctx, &linkv1.Command{Kind: &linkv1.Command_Query{Query: &linkv1.Query{}}})
	if err != nil {
		l.w.log.Warn("cannot list the gateway's clients after a reconnect", "gateway_id", l.gatewayID, "err", err)
		return
	}
	alive := make(map[string]bool, len(r.GetClients()))
	for _, c := range r.GetClients() {
		alive[c.GetClientId()] = true
	}
	l.clients.forget(ids, alive)
}

// retire ends a link to a gateway the register dropped, once its stream
// ended (the gateway exited) or after retireGrace, and then reports a
// close for every client it still remembers. If the gateway comes back
// meanwhile, syncLinksLocked revives the link and retire does nothing;
// if it came back after the link ended, a new link takes over what the
// old one remembered.
func (w *Worker) retire(l *gatewayLink) {
	_, changed := l.retireState()
	t := time.NewTimer(retireGrace)
	defer t.Stop()
	for {
		select {
		case <-l.ended:
		case <-t.C:
			l.stop()
			<-l.ended
		case <-changed:
			var retiring bool
			if retiring, changed = l.retireState(); !retiring {
				return // revived
			}
			continue
		}
		break
	}
	w.mu.Lock()
	if w.retiring[l.gatewayID] == l {
		delete(w.retiring, l.gatewayID)
	}
	if cur := w.links[l.gatewayID]; cur != nil {
		if cur == l { // revived as it ended: start afresh
			w.replaceLinkLocked(l)
		} else {
			cur.clients.merge(l.clients.take())
		}
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	lost := l.clients.take()
	if len(lost) == 0 {
		return
	}
	w.log.Warn("gateway lost: reporting its clients closed", "gateway_id", l.gatewayID, "clients", len(lost))
	for id, c := range lost {
		ev := &linkv1.Event{ClientId: id, Uid: c.uid, Session: c.session,
			Kind: &linkv1.Event_Closed{Closed: &linkv1.Closed{Code: int32(websocket.StatusAbnormalClosure), Reason: "gateway lost"}}}
		if !w.deliver(w.linkCtx, laneEvent{ev: ev, gatewayAddress: l.public, gatewayLost: true}) {
			return // the worker is stopping
		}
	}
}
