package worker

import (
	"sync"
	"sync/atomic"

	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// A client's events carry its uid and session as the gateway saw them when
// it read the event. A handler that binds or changes the session while
// later events of the same client are already on their way would see the
// old values in them (a say sent right after a bind, without waiting for
// its answer). The worker therefore remembers the newest state its own
// calls produced, per client, and gives it to events read before that
// change; events read after it carry it themselves.

// clientStates remembers, per client, the newest state the worker's calls
// left it in.
type clientStates struct {
	n  atomic.Int64 // len(m): events skip the lock while it is zero
	mu sync.Mutex
	m  map[string]*linkv1.ClientState
}

// note records the state a command result reports.
func (s *clientStates) note(clientID string, st *linkv1.ClientState) {
	if st == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[clientID]; old != nil && old.GetVersion() >= st.GetVersion() {
		return
	}
	if s.m == nil {
		s.m = make(map[string]*linkv1.ClientState)
	}
	s.m[clientID] = st
	s.n.Store(int64(len(s.m)))
}

// apply sets c's uid and session from the remembered state when it is
// newer than the event's; a close forgets the client.
func (s *clientStates) apply(ev *linkv1.Event, c *Client) {
	if s.n.Load() == 0 {
		return // the common case: no call changed a state events lag behind
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.n.Store(int64(len(s.m))) }()
	st := s.m[ev.GetClientId()]
	if _, closed := ev.GetKind().(*linkv1.Event_Closed); closed {
		delete(s.m, ev.GetClientId())
	}
	switch {
	case st == nil:
	case st.GetVersion() > ev.GetStateVersion():
		c.UID, c.Session = st.GetUid(), st.GetSession()
	default:
		delete(s.m, ev.GetClientId()) // the events are up to date again
	}
}
