package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/gatewire/gatewire/internal/clientid"
	"github.com/gatewire/gatewire/internal/directory"
	"github.com/gatewire/gatewire/internal/metrics"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// Config configures a Worker. Zero values mean the documented defaults.
type Config struct {
	// ID names the worker to gateways; zero means a random id.
	ID string
	// Lanes is how many clients' events are handled at once; zero means 64.
	// A client always maps to the same lane, which keeps its events in order.
	Lanes int
	// LaneQueue is how many events may wait per lane; zero means 256.
	LaneQueue int
	// CallTimeout bounds an API call when its ctx has no deadline; zero
	// means 5s.
	CallTimeout time.Duration
	// DialOptions are used to dial gateways' link endpoints (transport
	// credentials and the shared secret).
	DialOptions []grpc.DialOption
	// PostLinger is how long a posted command (API.Post: a say's save)
	// may wait on its link for a command that needs an answer to go to
	// the same gateway, so that both reach it in one stream message and
	// wake it once; zero sends it at once. Processes default to
	// DefaultPostLinger.
	PostLinger time.Duration
}

// DefaultPostLinger is the worker processes' default Config.PostLinger.
// It is the says' default linger, so that a batch's saves ride with the
// next batch's texts. At 2,200 say/s it cut the gateways' and workers' CPU
// per say by about a tenth (bench/HISTORY.md).
const DefaultPostLinger = 5 * time.Millisecond

func (c *Config) fill() {
	if c.ID == "" {
		c.ID = "worker-" + clientid.NewGatewayID()
	}
	if c.Lanes <= 0 {
		c.Lanes = 64
	}
	if c.LaneQueue <= 0 {
		c.LaneQueue = 256
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
}

// Worker links to every live gateway and runs a Handler for their clients.
type Worker struct {
	cfg  Config
	dir  directory.Directory // filtered by liveness
	log  *slog.Logger
	seed maphash.Seed
	// states holds the client states this worker's calls produced.
	states clientStates

	mu       sync.RWMutex
	live     map[string]*registerv1.Gateway // by gateway id, as the register says
	links    map[string]*gatewayLink        // by gateway id, one per live gateway while Run runs
	retiring map[string]*gatewayLink        // by gateway id: links to dropped gateways, until their stream ends
	linkCtx  context.Context                // ends after in-flight events are handled
	stopping bool                           // Run is shutting down: no new links
	lanes    []chan laneEvent
	handler  Handler
	wg       sync.WaitGroup // link goroutines

	laneMu      sync.RWMutex  // write-held while the lanes are closed
	lanesClosed bool          // guarded by laneMu
	stopDeliver chan struct{} // closed when lanes stop taking events
}

// New returns a Worker reading the directory dir.
func New(cfg Config, dir directory.Directory, log *slog.Logger) *Worker {
	cfg.fill()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{cfg: cfg, log: log.With("worker_id", cfg.ID), seed: maphash.MakeSeed(),
		live: make(map[string]*registerv1.Gateway), links: make(map[string]*gatewayLink), retiring: make(map[string]*gatewayLink)}
	w.dir = directory.Live(dir, w.isLive)
	return w
}

// API returns the business API backed by this worker.
func (w *Worker) API() API { return (*api)(w) }

func (w *Worker) isLive(gatewayID string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.isLiveLocked(gatewayID)
}

// isLiveLocked is isLive with w.mu held.
func (w *Worker) isLiveLocked(gatewayID string) bool {
	_, ok := w.live[gatewayID]
	return ok
}

// SetGateways replaces the live gateway list (from the register's Watch):
// links to new gateways are opened, links to gone ones closed.
func (w *Worker) SetGateways(gws []*registerv1.Gateway) {
	w.mu.Lock()
	defer w.mu.Unlock()
	live := make(map[string]*registerv1.Gateway, len(gws))
	for _, gw := range gws {
		live[gw.GetId()] = gw
	}
	w.live = live
	w.syncLinksLocked()
}

// syncLinksLocked starts and retires links to match w.live; w.mu is held.
func (w *Worker) syncLinksLocked() {
	if w.linkCtx == nil || w.stopping {
		return
	}
	for id, l := range w.links {
		if gw, ok := w.live[id]; !ok || gw.GetLinkAddress() != l.address {
			delete(w.links, id)
			if old := w.retiring[id]; old != nil {
				old.stop() // a third generation: the oldest goes at once
			}
			w.retiring[id] = l
			l.setRetiring(true)
			w.wg.Add(1)
			go func() { defer w.wg.Done(); w.retire(l) }()
		}
	}
	for id, gw := range w.live {
		if _, ok := w.links[id]; ok {
			continue
		}
		if l := w.retiring[id]; l != nil && l.address == gw.GetLinkAddress() && !l.hasEnded() {
			delete(w.retiring, id)
			w.links[id] = l
			l.setRetiring(false)
			continue
		}
		w.startLinkLocked(gw, nil)
	}
}

// startLinkLocked opens a link to gw that remembers the clients of from
// (a link it replaces), if any; w.mu is held.
func (w *Worker) startLinkLocked(gw *registerv1.Gateway, from *gatewayLink) {
	l := newGatewayLink(w, gw)
	if from != nil {
		l.clients.merge(from.clients.take())
	}
	w.links[gw.GetId()] = l
	w.wg.Add(1)
	go func() { defer w.wg.Done(); l.run(w.linkCtx) }()
}

// replaceLinkLocked replaces the ended link l, which is in w.links, by a
// new one to the same gateway; w.mu is held.
func (w *Worker) replaceLinkLocked(l *gatewayLink) {
	delete(w.links, l.gatewayID)
	if gw, ok := w.live[l.gatewayID]; ok && !w.stopping {
		w.startLinkLocked(gw, l)
	}
}

// drainTimeout bounds how long a stopping worker waits for gateways to
// confirm that no more events will come.
const drainTimeout = 5 * time.Second

// Run handles events with h until ctx ends, then stops gracefully: it tells
// every gateway it is leaving (they route new events elsewhere once it is
// gone), handles every event already sent to it — its links stay up for
// the handlers' API calls — and only then closes the links.
func (w *Worker) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("worker: nil handler")
	}
	w.mu.Lock()
	if w.linkCtx != nil {
		w.mu.Unlock()
		return errors.New("worker: Run called twice")
	}
	linkCtx, stopLinks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLinks()
	w.linkCtx = linkCtx
	w.handler = h
	w.stopDeliver = make(chan struct{})
	w.lanes = make([]chan laneEvent, w.cfg.Lanes)
	var lanes sync.WaitGroup
	for i := range w.lanes {
		w.lanes[i] = make(chan laneEvent, w.cfg.LaneQueue)
		lanes.Add(1)
		go func(ch chan laneEvent) { defer lanes.Done(); w.runLane(ch) }(w.lanes[i])
	}
	w.syncLinksLocked()
	w.mu.Unlock()

	<-ctx.Done()
	w.mu.Lock()
	w.stopping = true
	links := make([]*gatewayLink, 0, len(w.links))
	for _, l := range w.links {
		links = append(links, l)
	}
	w.mu.Unlock()

	w.log.Info("worker stopping: draining links", "links", len(links))
	deadline := time.NewTimer(drainTimeout)
	for _, l := range links {
		l.leave()
	}
	for _, l := range links {
		select {
		case <-l.drained:
		case <-deadline.C:
			w.log.Warn("gateway did not confirm drain in time", "gateway_id", l.gatewayID)
		}
	}
	deadline.Stop()

	close(w.stopDeliver) // undrained links cannot block on a full lane now
	w.laneMu.Lock()
	w.lanesClosed = true
	for _, ch := range w.lanes {
		close(ch)
	}
	w.laneMu.Unlock()
	lanes.Wait() // in-flight events finish; their API calls still have links

	w.mu.Lock()
	for id, l := range w.links {
		l.stop()
		delete(w.links, id)
	}
	for id, l := range w.retiring {
		l.stop()
		delete(w.retiring, id)
	}
	w.mu.Unlock()
	stopLinks()
	w.wg.Wait()
	w.log.Info("worker stopped")
	return nil
}

// link returns the link to the gateway holding clientID.
func (w *Worker) link(clientID string) (*gatewayLink, error) {
	gw, err := clientid.GatewayOf(clientID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return w.linkTo(gw)
}

func (w *Worker) linkTo(gatewayID string) (*gatewayLink, error) {
	w.mu.RLock()
	l := w.links[gatewayID]
	_, live := w.live[gatewayID]
	w.mu.RUnlock()
	if !live {
		return nil, ErrNotFound
	}
	if l == nil {
		return nil, fmt.Errorf("%w: no link to gateway %s", ErrUnavailable, gatewayID)
	}
	return l, nil
}

// laneEvent is an event waiting in a lane.
type laneEvent struct {
	ev             *linkv1.Event
	gatewayAddress string
	// gatewayLost marks the close the worker reports for a client of a
	// gateway that died.
	gatewayLost bool
}

// deliver queues an event on its client's lane, waiting while it is full.
// It fails once the worker stopped taking events.
func (w *Worker) deliver(ctx context.Context, ev laneEvent) bool {
	w.laneMu.RLock()
	defer w.laneMu.RUnlock()
	if w.lanesClosed {
		return false
	}
	lane := w.lanes[maphash.String(w.seed, ev.ev.GetClientId())%uint64(len(w.lanes))]
	select {
	case lane <- ev:
		metrics.LaneQueue.Inc()
		return true
	case <-ctx.Done():
		return false
	case <-w.stopDeliver:
		return false
	}
}

func (w *Worker) runLane(ch chan laneEvent) {
	for le := range ch {
		w.handle(le)
	}
}

// handle runs the handler for one event, recovering from its panics so that
// one bad event cannot take the worker down.
func (w *Worker) handle(le laneEvent) {
	metrics.LaneQueue.Dec()
	ev := le.ev
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("handler panicked", "client_id", ev.GetClientId(), "panic", r)
		}
	}()
	ctx := w.linkCtx // lives until every in-flight event is handled
	c := &Client{ID: ev.GetClientId(), UID: ev.GetUid(), GatewayAddress: le.gatewayAddress, Session: ev.GetSession()}
	w.states.apply(ev, c)
	switch k := ev.GetKind().(type) {
	case *linkv1.Event_Connected:
		c.RemoteAddress = k.Connected.GetRemoteAddress()
		if a := k.Connected.GetGatewayAddress(); a != "" {
			c.GatewayAddress = a
		}
		r := &Request{Path: k.Connected.GetPath(), Query: k.Connected.GetQuery(), Header: make(map[string][]string)}
		for _, h := range k.Connected.GetHeaders() {
			r.Header[h.GetName()] = h.GetValues()
		}
		metrics.EventsConnect.Inc()
		w.handler.OnConnect(ctx, c)
		w.handler.OnWebSocketConnect(ctx, c, r)
	case *linkv1.Event_Message:
		metrics.EventsMessage.Inc()
		w.handler.OnMessage(ctx, c, Message{Data: k.Message.GetData(), Binary: k.Message.GetBinary()})
	case *linkv1.Event_Closed:
		c.CloseCode, c.GatewayLost = int(k.Closed.GetCode()), le.gatewayLost
		if c.GatewayLost {
			metrics.EventsLostClose.Inc()
		} else {
			metrics.EventsClose.Inc()
		}
		w.handler.OnClose(ctx, c)
	}
}
