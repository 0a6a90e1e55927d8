package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/gatewire/gatewire/internal/metrics"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// maxBatch caps how many commands travel in one stream message.
const maxBatch = 256

// reconnectDelay is the pause between attempts to reopen a link.
const reconnectDelay = 300 * time.Millisecond

// gatewayLink is the worker's stream to one gateway: it receives that
// gateway's client events and carries commands to it.
type gatewayLink struct {
	w         *Worker
	gatewayID string
	address   string
	public    string

	cancel context.CancelFunc
	cmds   chan *linkv1.Command

	leaveOnce sync.Once
	leaving   chan struct{} // closed to announce the worker is leaving
	drained   chan struct{} // closed when the gateway answered drained
	drainOnce sync.Once

	clients clientMemos   // the clients whose events came here
	ended   chan struct{} // closed when run returned

	stateMu  sync.Mutex
	retiring bool          // the register dropped the gateway
	changed  chan struct{} // closed and replaced when retiring changes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *linkv1.CommandResult
	up      chan struct{} // closed while a stream is open; nil when down
}

func newGatewayLink(w *Worker, gw *registerv1.Gateway) *gatewayLink {
	return &gatewayLink{
		w: w, gatewayID: gw.GetId(), address: gw.GetLinkAddress(), public: gw.GetPublicAddress(),
		cmds: make(chan *linkv1.Command, 4*maxBatch), pending: make(map[uint64]chan *linkv1.CommandResult),
		leaving: make(chan struct{}), drained: make(chan struct{}),
		ended: make(chan struct{}), changed: make(chan struct{}),
	}
}

// setRetiring marks the link as one to a gateway the register dropped (it
// ends with its stream instead of reconnecting), or no longer.
func (l *gatewayLink) setRetiring(r bool) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.retiring != r {
		l.retiring = r
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// retireState returns whether the link is retiring and a channel closed
// when that changes.
func (l *gatewayLink) retireState() (bool, <-chan struct{}) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.retiring, l.changed
}

// hasEnded reports whether run returned.
func (l *gatewayLink) hasEnded() bool {
	select {
	case <-l.ended:
		return true
	default:
		return false
	}
}

// leave asks the gateway to route no new events here; drained is closed
// once it confirmed that no event follows (or the link is down: then no
// event can follow either).
func (l *gatewayLink) leave() {
	l.leaveOnce.Do(func() { close(l.leaving) })
	l.mu.Lock()
	down := l.up == nil
	l.mu.Unlock()
	if down {
		l.markDrained()
	}
}

func (l *gatewayLink) markDrained() {
	l.drainOnce.Do(func() { close(l.drained) })
}

// stop ends the link; run returns soon after.
func (l *gatewayLink) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}

// run keeps a stream open to the gateway until stopped, ctx ends or, once
// retired, the stream ends.
func (l *gatewayLink) run(ctx context.Context) {
	defer close(l.ended)
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	defer cancel()
	log := l.w.log.With("gateway_id", l.gatewayID, "link_address", l.address)
	cc, err := grpc.NewClient(l.address, l.w.cfg.DialOptions...)
	if err != nil {
		log.Error("cannot create link client", "err", err)
		return
	}
	defer cc.Close()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := l.session(ctx, cc, attempt > 0)
		l.failPending()
		if ctx.Err() != nil {
			return
		}
		retiring, changed := l.retireState()
		if retiring {
			log.Info("link to departed gateway ended", "err", err)
			return
		}
		log.Warn("link to gateway broke; reconnecting", "err", err)
		t := time.NewTimer(reconnectDelay)
		select {
		case <-ctx.Done():
		case <-changed: // retiring now: the loop ends above next time
		case <-t.C:
		}
		t.Stop()
	}
}

// session runs one stream until it fails; a reconnect first forgets the
// remembered clients that closed meanwhile.
func (l *gatewayLink) session(ctx context.Context, cc *grpc.ClientConn, reconnect bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := linkv1.NewLinkServiceClient(cc).Connect(ctx, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	if err := stream.Send(&linkv1.ConnectRequest{Hello: &linkv1.WorkerHello{WorkerId: l.w.cfg.ID}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if got := first.GetHello().GetGatewayId(); got != l.gatewayID {
		return fmt.Errorf("address %s is gateway %q, not %q", l.address, got, l.gatewayID)
	}
	up := make(chan struct{})
	l.mu.Lock()
	l.up = up
	l.mu.Unlock()
	metrics.WorkerLinks.Inc()
	defer func() {
		metrics.WorkerLinks.Dec()
		l.mu.Lock()
		l.up = nil
		l.mu.Unlock()
	}()
	l.w.log.Info("linked to gateway", "gateway_id", l.gatewayID)

	errc := make(chan error, 1)
	go func() { errc <- l.writeLoop(ctx, stream) }()
	pump := make(chan inbound, eventBacklog)
	pumped := make(chan struct{})
	go func() { defer close(pumped); l.pumpEvents(ctx, cancel, pump) }()
	if reconnect {
		go l.prune(ctx)
	}
	err = l.readLoop(ctx, stream, pump)
	close(pump)
	<-pumped // the events read are in the lanes
	cancel()
	<-errc
	select {
	case <-l.leaving:
		l.markDrained() // the stream is gone: no event can follow
	default:
	}
	return err
}

// eventBacklog is how many stream messages of events may wait for the
// lanes. Command results never wait behind them: handlers blocked on a
// full lane are often waiting for a result themselves.
const eventBacklog = 1024

// inbound is the part of a stream message that goes to the lanes, in order.
type inbound struct {
	events  []*linkv1.Event
	drained bool
}

// readLoop hands command results to their callers at once and events (and
// the drained mark, which follows them) to pump, until the stream ends.
func (l *gatewayLink) readLoop(ctx context.Context, stream linkv1.LinkService_ConnectClient, pump chan<- inbound) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, r := range resp.GetResults() {
			l.mu.Lock()
			ch := l.pending[r.GetId()]
			delete(l.pending, r.GetId())
			l.mu.Unlock()
			if ch != nil {
				ch <- r // buffered, never blocks
			}
		}
		if len(resp.GetEvents()) == 0 && !resp.GetDrained() {
			continue
		}
		select {
		case pump <- inbound{events: resp.GetEvents(), drained: resp.GetDrained()}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pumpEvents delivers what readLoop queued to the lanes, in order, until
// pump is closed. It cancels the session when the worker stops taking
// events.
func (l *gatewayLink) pumpEvents(ctx context.Context, cancel context.CancelFunc, pump <-chan inbound) {
	stopped := false
	for in := range pump {
		for _, ev := range in.events {
			if stopped {
				break
			}
			l.clients.note(ev)
			if !l.w.deliver(ctx, laneEvent{ev: ev, gatewayAddress: l.public}) {
				stopped = true
				cancel()
			}
		}
		if in.drained && !stopped {
			l.markDrained()
		}
	}
}

// writeLoop sends queued commands, batching whatever is waiting. Posted
// commands (id 0: nobody waits for their result) may wait up to the
// PostLinger for a command that is waited for, and then go with it in
// order; a worker that is leaving sends everything at once.
func (l *gatewayLink) writeLoop(ctx context.Context, stream linkv1.LinkService_ConnectClient) error {
	leaving := l.leaving
	linger := l.w.cfg.PostLinger
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var lingered <-chan time.Time // set while req holds only posted commands
	var req linkv1.ConnectRequest
	now := false // something in req is waited for
	add := func(c *linkv1.Command) {
		req.Commands = append(req.Commands, c)
		now = now || c.GetId() != 0
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-l.cmds:
			add(c)
		case <-leaving:
			req.Leaving = true
			leaving = nil // announce once per stream
			linger = 0
			now = true
		case <-lingered:
			lingered = nil
			now = true
		}
	fill:
		for len(req.Commands) < maxBatch {
			select {
			case c := <-l.cmds:
				add(c)
			default:
				break fill
			}
		}
		if !now && linger > 0 && len(req.Commands) < maxBatch {
			if lingered == nil {
				timer.Reset(linger)
				lingered = timer.C
			}
			continue
		}
		if lingered != nil {
			timer.Stop()
			lingered = nil
		}
		if err := stream.Send(&req); err != nil {
			return err
		}
		req, now = linkv1.ConnectRequest{}, false
	}
}

// failPending answers every command waiting for a result with UNAVAILABLE:
// the stream that carried it is gone and its fate is unknown.
func (l *gatewayLink) failPending() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, ch := range l.pending {
		ch <- &linkv1.CommandResult{Id: id, Code: linkv1.ResultCode_RESULT_CODE_UNAVAILABLE, Error: "link to gateway broke"}
		delete(l.pending, id)
	}
	// Commands queued but not sent would go out on the next stream; their
	// callers were just told they failed, so drop them.
	for {
		select {
		case <-l.cmds:
		default:
			return
		}
	}
}

// call sends cmd and waits for its result.
func (l *gatewayLink) call(ctx context.Context, cmd *linkv1.Command) (*linkv1.CommandResult, error) {
	ch := make(chan *linkv1.CommandResult, 1)
	l.mu.Lock()
	if l.up == nil {
		l.mu.Unlock()
		return nil, l.downErr()
	}
	l.nextID++
	cmd.Id = l.nextID
	l.pending[cmd.Id] = ch
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.pending, cmd.Id)
		l.mu.Unlock()
	}
	if err := l.enqueue(ctx, cmd); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-ch:
		return r, resultErr(r)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("%w: gateway %s did not answer: %v", ErrUnavailable, l.gatewayID, ctx.Err())
	}
}

// post sends cmd without waiting for its fate: it carries id 0, for which
// the gateway sends no result. Commands keep their order on the stream,
// posted or called.
func (l *gatewayLink) post(ctx context.Context, cmd *linkv1.Command) error {
	l.mu.Lock()
	down := l.up == nil
	l.mu.Unlock()
	if down {
		return l.downErr()
	}
	cmd.Id = 0
	return l.enqueue(ctx, cmd)
}

// enqueue hands cmd to the stream's writer, unless ctx ends first.
func (l *gatewayLink) enqueue(ctx context.Context, cmd *linkv1.Command) error {
	select {
	case l.cmds <- cmd:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

func (l *gatewayLink) downErr() error {
	return fmt.Errorf("%w: link to gateway %s is down", ErrUnavailable, l.gatewayID)
}

func resultErr(r *linkv1.CommandResult) error {
	var base error
	switch r.GetCode() {
	case linkv1.ResultCode_RESULT_CODE_OK:
		return nil
	case linkv1.ResultCode_RESULT_CODE_NOT_FOUND:
		base = ErrNotFound
	case linkv1.ResultCode_RESULT_CODE_INVALID:
		base = ErrInvalidArgument
	case linkv1.ResultCode_RESULT_CODE_CONFLICT:
		base = ErrConflict
	case linkv1.ResultCode_RESULT_CODE_UNAVAILABLE:
		base = ErrUnavailable
	default:
		base = errors.New("unknown result code")
	}
	if r.GetError() == "" {
		return base
	}
	return fmt.Errorf("%w: %s", base, r.GetError())
}
