package gateway

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatewire/gatewire/internal/metrics"
	linkv1 "github.com/gatewire/gatewire/proto/gatewire/link/v1"
)

// maxBatch caps how many events and results travel in one stream message.
const maxBatch = 256

// link is one worker's stream, as seen by the gateway.
type link struct {
	workerID string
	out      chan linkItem // events and results waiting for the stream writer
	done     chan struct{} // closed when the stream has ended
	assigned atomic.Int64  // connections routed to this worker

	// drainMu orders event pushes against the drained marker: once
	// draining is set no event is queued after the marker.
	drainMu  sync.RWMutex
	draining bool
}

type linkItem struct {
	event   *linkv1.Event
	result  *linkv1.CommandResult
	drained bool
}

func (l *link) alive() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// errDraining reports an event for a worker that is leaving.
var errDraining = errors.New("worker is leaving")

// pushEvent queues an event for the worker unless it is leaving; it waits
// while the queue is full (backpressure).
func (l *link) pushEvent(ctx context.Context, ev *linkv1.Event) error {
	l.drainMu.RLock()
	defer l.drainMu.RUnlock()
	if l.draining {
		return errDraining
	}
	if !l.push(ctx, linkItem{event: ev}) {
		return errGone
	}
	return nil
}

// drain stops events to the worker and queues the drained marker after the
// events already queued.
func (l *link) drain(ctx context.Context) {
	l.drainMu.Lock()
	defer l.drainMu.Unlock()
	if l.draining {
		return
	}
	l.draining = true
	l.push(ctx, linkItem{drained: true})
}

func (l *link) isDraining() bool {
	l.drainMu.RLock()
	defer l.drainMu.RUnlock()
	return l.draining
}

// push queues an item for the worker; it waits while the queue is full
// (backpressure) and fails when the link or ctx ends.
func (l *link) push(ctx context.Context, it linkItem) bool {
	select {
	case l.out <- it:
		return true
	case <-l.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// dispatch sends ev to the connection's worker, choosing a new one when it
// has none or its link ended. When the worker is leaving, dispatch waits
// until it has closed its link — it may still be handling this client's
// previous event — and then picks another, so that a client's events never
// run on two workers at once. It fails when no worker is linked within
// WorkerWait or ctx ends.
func (g *Gateway) dispatch(ctx context.Context, c *conn, ev *linkv1.Event) bool {
	for ctx.Err() == nil {
		l := c.currentWorker()
		if l != nil && l.isDraining() {
			select {
			case <-l.done:
			case <-ctx.Done():
				return false
			}
		}
		if l == nil || !l.alive() {
			if l = g.pickLink(ctx); l == nil {
				return false
			}
			c.setWorker(l)
		}
		if l.pushEvent(ctx, ev) == nil {
			metrics.EventsForwarded.Inc()
			return true
		}
	}
	return false
}

func (c *conn) currentWorker() *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.worker
}

// setWorker routes the connection to l (nil: to nobody) and keeps the
// links' load counts right.
func (c *conn) setWorker(l *link) {
	c.mu.Lock()
	old := c.worker
	c.worker = l
	c.mu.Unlock()
	if old != nil {
		old.assigned.Add(-1)
	}
	if l != nil {
		l.assigned.Add(1)
	}
}

// pickLink returns the live link with the fewest connections, waiting up to
// WorkerWait for one to arrive.
func (g *Gateway) pickLink(ctx context.Context) *link {
	deadline := time.NewTimer(g.cfg.WorkerWait)
	defer deadline.Stop()
	for {
		g.linksMu.Lock()
		var best *link
		for l := range g.links {
			if l.alive() && !l.isDraining() && (best == nil || l.assigned.Load() < best.assigned.Load()) {
				best = l
			}
		}
		added := g.linkAdded
		g.linksMu.Unlock()
		if best != nil {
			return best
		}
		select {
		case <-added:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// Connect implements linkv1.LinkServiceServer: one worker's link.
func (g *Gateway) Connect(stream linkv1.LinkService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello.GetWorkerId() == "" {
		return status.Error(codes.InvalidArgument, "first message must carry hello with worker_id")
	}
	if err := stream.Send(&linkv1.ConnectResponse{Hello: &linkv1.GatewayHello{GatewayId: g.cfg.ID, PublicAddress: g.cfg.PublicAddress}}); err != nil {
		return err
	}
	l := &link{workerID: hello.GetWorkerId(), out: make(chan linkItem, 4*maxBatch), done: make(chan struct{})}
	log := g.log.With("worker_id", l.workerID)
	ctx, cancel := context.WithCancel(stream.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		if err := l.writeLoop(ctx, stream); err != nil && ctx.Err() == nil {
			log.Warn("link write failed", "err", err)
		}
	}()
	g.linksMu.Lock()
	g.links[l] = struct{}{}
	close(g.linkAdded)
	g.linkAdded = make(chan struct{})
	g.linksMu.Unlock()
	log.Info("worker linked")

	err = g.readCommands(ctx, stream, l, first.GetCommands())
	cancel()
	close(l.done)
	wg.Wait()
	g.linksMu.Lock()
	delete(g.links, l)
	g.linksMu.Unlock()
	log.Info("worker unlinked", "err", err)
	if errors.Is(err, io.EOF) || ctx.Err() != nil {
		return nil
	}
	return err
}

func (g *Gateway) readCommands(ctx context.Context, stream linkv1.LinkService_ConnectServer, l *link, cmds []*linkv1.Command) error {
	for {
		for _, cmd := range cmds {
			res := g.execute(ctx, cmd)
			if cmd.GetId() != 0 {
				res.Id = cmd.GetId()
				if !l.push(ctx, linkItem{result: res}) {
					return ctx.Err()
				}
			}
		}
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		cmds = req.GetCommands()
		if req.GetLeaving() {
			l.drain(ctx)
		}
	}
}

// writeLoop sends queued events and results, batching whatever is waiting.
func (l *link) writeLoop(ctx context.Context, stream linkv1.LinkService_ConnectServer) error {
	for {
		var resp linkv1.ConnectResponse
		select {
		case <-ctx.Done():
			return nil
		case it := <-l.out:
			it.addTo(&resp)
		}
	fill:
		for len(resp.Events)+len(resp.Results) < maxBatch {
			select {
			case it := <-l.out:
				it.addTo(&resp)
			default:
				break fill
			}
		}
		if err := stream.Send(&resp); err != nil {
			return err
		}
	}
}

func (it linkItem) addTo(resp *linkv1.ConnectResponse) {
	if it.event != nil {
		resp.Events = append(resp.Events, it.event)
	}
	if it.result != nil {
		resp.Results = append(resp.Results, it.result)
	}
	if it.drained {
		resp.Drained = true
	}
}

// execute runs one command and returns its result (without id).
func (g *Gateway) execute(ctx context.Context, cmd *linkv1.Command) *linkv1.CommandResult {
	metrics.Commands.Inc()
	switch k := cmd.GetKind().(type) {
	case *linkv1.Command_Send:
		s := k.Send
		f := frame{data: s.GetData(), binary: s.GetBinary()}
		n := 0
		// A short list (a chat message's one or two connections) is looked
		// up and written in place: no slice, no goroutine.
		if ids := s.GetClientIds(); len(ids) <= fanOutChunk {
			for _, id := range ids {
				if c := g.conn(id); c != nil && c.enqueue(f) {
					n++
				}
			}
		} else {
			n = fanOut(g.connsOf(ids), f)
		}
		res := ok()
		res.Delivered = uint32(n)
		if n == 0 && len(s.GetClientIds()) == 1 {
			res.Code = linkv1.ResultCode_RESULT_CODE_NOT_FOUND
		}
		return res
	case *linkv1.Command_Close:
		cl := k.Close
		c := g.conn(cl.GetClientId())
		if c == nil {
			return fail(linkv1.ResultCode_RESULT_CODE_NOT_FOUND, "client not connected")
		}
		if cl.GetDestroy() {
			c.cut()
			return ok()
		}
		if len(cl.GetData()) > 0 {
			c.enqueue(frame{data: cl.GetData()})
		}
		st := websocket.StatusCode(cl.GetStatus())
		if st == 0 {
			st = websocket.StatusNormalClosure
		}
		c.closeWith(st, cl.GetReason())
		return ok()
	case *linkv1.Command_Bind:
		return g.bindCommand(ctx, k.Bind.GetClientId(), func(ctx context.Context, c *conn) error {
			if k.Bind.GetUid() == "" {
				return errEmptyUID
			}
			return c.bind(ctx, k.Bind.GetUid())
		})
	case *linkv1.Command_Unbind:
		return g.bindCommand(ctx, k.Unbind.GetClientId(), func(ctx context.Context, c *conn) error {
			return c.unbind(ctx, k.Unbind.GetUid())
		})
	case *linkv1.Command_SendAll:
		return g.sendAll(k.SendAll)
	case *linkv1.Command_JoinGroup:
		return g.bindCommand(ctx, k.JoinGroup.GetClientId(), func(ctx context.Context, c *conn) error {
			if k.JoinGroup.GetGroup() == "" {
				return errEmptyGroup
			}
			return c.join(ctx, k.JoinGroup.GetGroup())
		})
	case *linkv1.Command_LeaveGroup:
		return g.bindCommand(ctx, k.LeaveGroup.GetClientId(), func(ctx context.Context, c *conn) error {
			return c.leave(ctx, k.LeaveGroup.GetGroup())
		})
	case *linkv1.Command_Ungroup:
		return g.ungroup(ctx, k.Ungroup.GetGroup())
	case *linkv1.Command_SetSession:
		return g.bindCommand(ctx, k.SetSession.GetClientId(), func(_ context.Context, c *conn) error {
			return c.setSession(k.SetSession.GetSession(), false)
		})
	case *linkv1.Command_UpdateSession:
		return g.bindCommand(ctx, k.UpdateSession.GetClientId(), func(_ context.Context, c *conn) error {
			return c.setSession(k.UpdateSession.GetPatch(), true)
		})
	case *linkv1.Command_GetSession:
		c := g.conn(k.GetSession.GetClientId())
		if c == nil {
			return fail(linkv1.ResultCode_RESULT_CODE_NOT_FOUND, "client not connected")
		}
		res := ok()
		_, res.Session, _ = c.state()
		return res
	case *linkv1.Command_Query:
		return g.query(k.Query)
	default:
		return fail(linkv1.ResultCode_RESULT_CODE_INVALID, "unknown command")
	}
}

var (
	errEmptyUID   = errors.New("empty uid")
	errEmptyGroup = errors.New("empty group")
)

// sendAll writes one frame to every connection but the excluded ones.
func (g *Gateway) sendAll(s *linkv1.SendAll) *linkv1.CommandResult {
	exclude := make(map[string]struct{}, len(s.GetExclude()))
	for _, id := range s.GetExclude() {
		exclude[id] = struct{}{}
	}
	conns := g.snapshot()
	if len(exclude) > 0 {
		conns = slices.DeleteFunc(conns, func(c *conn) bool { _, skip := exclude[c.id]; return skip })
	}
	n := fanOut(conns, frame{data: s.GetData(), binary: s.GetBinary()})
	res := ok()
	res.Delivered = uint32(n)
	return res
}

// ungroup removes every connection of this gateway from group.
func (g *Gateway) ungroup(ctx context.Context, group string) *linkv1.CommandResult {
	if group == "" {
		return fail(linkv1.ResultCode_RESULT_CODE_INVALID, errEmptyGroup.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DirectoryTimeout)
	defer cancel()
	n := 0
	for _, c := range g.snapshot() {
		if !c.inGroup(group) {
			continue
		}
		if err := c.leave(ctx, group); err != nil && !errors.Is(err, errGone) {
			g.log.Error("ungroup: directory call failed", "client_id", c.id, "err", err)
			return fail(linkv1.ResultCode_RESULT_CODE_UNAVAILABLE, "directory unavailable")
		}
		n++
	}
	res := ok()
	res.Count = uint32(n)
	return res
}

// query lists or counts this gateway's connections.
func (g *Gateway) query(q *linkv1.Query) *linkv1.CommandResult {
	res := ok()
	var conns []*conn
	if id := q.GetClientId(); id != "" {
		if c := g.conn(id); c != nil {
			conns = []*conn{c}
		}
	} else {
		conns = g.snapshot()
	}
	for _, c := range conns {
		if q.GetGroup() != "" && !c.inGroup(q.GetGroup()) {
			continue
		}
		res.Count++
		if !q.GetCountOnly() {
			res.Clients = append(res.Clients, c.info(true))
		}
	}
	return res
}

func (g *Gateway) bindCommand(ctx context.Context, clientID string, do func(context.Context, *conn) error) *linkv1.CommandResult {
	c := g.conn(clientID)
	if c == nil {
		return fail(linkv1.ResultCode_RESULT_CODE_NOT_FOUND, "client not connected")
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DirectoryTimeout)
	defer cancel()
	switch err := do(ctx, c); {
	case err == nil:
		res := ok()
		uid, session, version := c.state()
		res.State = &linkv1.ClientState{Version: version, Uid: uid, Session: session}
		return res
	case errors.Is(err, errGone):
		return fail(linkv1.ResultCode_RESULT_CODE_NOT_FOUND, err.Error())
	case errors.Is(err, errOtherUID):
		return fail(linkv1.ResultCode_RESULT_CODE_CONFLICT, err.Error())
	case errors.Is(err, errEmptyUID), errors.Is(err, errEmptyGroup), errors.Is(err, errBadSession):
		return fail(linkv1.ResultCode_RESULT_CODE_INVALID, err.Error())
	default:
		g.log.Error("directory call failed", "client_id", clientID, "err", err)
		return fail(linkv1.ResultCode_RESULT_CODE_UNAVAILABLE, "directory unavailable")
	}
}

func ok() *linkv1.CommandResult {
	return &linkv1.CommandResult{Code: linkv1.ResultCode_RESULT_CODE_OK}
}

func fail(code linkv1.ResultCode, msg string) *linkv1.CommandResult {
	return &linkv1.CommandResult{Code: code, Error: msg}
}
