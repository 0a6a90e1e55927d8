package directory

import (
	"context"
	"slices"
	"sync"
	"time"
)

// coalesceTimeout bounds one shared lookup: it serves several callers, so
// it runs on no single caller's context.
const coalesceTimeout = 5 * time.Second

// coalesceMaxUIDs caps the uids of one shared lookup; a call that would
// exceed it reads on its own.
const coalesceMaxUIDs = 1024

// Coalesce returns a Directory that reads ClientIDs through d in shared
// calls: while one ClientIDs call of d is in flight, the calls that arrive
// wait together and go out as the next one (one Redis pipeline for all of
// them), so round trips per lookup fall as load rises. A lone call goes out
// at once — there is no linger — so an idle directory answers as fast as d.
// Every other method passes through to d unchanged.
//
// A shared call runs on a context of its own (the caller's values, 5s): a
// caller whose context ends stops waiting for it, not the others.
func Coalesce(d Directory) Directory {
	return &coalescer{Directory: d}
}

// coalescer is the Directory Coalesce returns.
type coalescer struct {
	Directory

	mu      sync.Mutex
	busy    bool    // a ClientIDs call of the Directory is in flight
	forming *lookup // the calls waiting for the next one; nil when none
}

// lookup is one shared ClientIDs call. Its fields other than turn, done,
// res and err are guarded by the coalescer's mu.
type lookup struct {
	uids    []string
	waiters int  // callers still waiting for it
	started bool // one of its callers is sending it
	turn    chan struct{}
	done    chan struct{} // closed once res and err are set
	res     map[string][]string
	err     error
}

// ClientIDs implements Directory.
func (c *coalescer) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	// A bad uid fails its own call, never a shared one.
	if err := checkUIDs(uids); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if !c.busy {
		c.busy = true
		c.mu.Unlock()
		res, err := c.Directory.ClientIDs(ctx, uids...)
		c.mu.Lock()
		c.nextLocked()
		c.mu.Unlock()
		return res, err
	}
	l := c.forming
	if l != nil && len(l.uids)+len(uids) > coalesceMaxUIDs {
		c.mu.Unlock()
		return c.Directory.ClientIDs(ctx, uids...)
	}
	if l == nil {
		l = &lookup{turn: make(chan struct{}), done: make(chan struct{})}
		c.forming = l
	}
	l.uids = append(l.uids, uids...)
	l.waiters++
	c.mu.Unlock()

	select {
	case <-l.turn:
	case <-ctx.Done():
		c.leave(l)
		return nil, ctx.Err()
	}
	c.mu.Lock()
	send := !l.started
	l.started = true
	c.mu.Unlock()
	if send {
		c.send(ctx, l)
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if l.err != nil {
		return nil, l.err
	}
	return pick(l.res, uids), nil
}

// send makes the shared call of l and passes the turn on.
func (c *coalescer) send(ctx context.Context, l *lookup) {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), coalesceTimeout)
	l.res, l.err = c.Directory.ClientIDs(callCtx, l.uids...)
	cancel()
	close(l.done)
	c.mu.Lock()
	c.nextLocked()
	c.mu.Unlock()
}

// leave takes a caller whose context ended off l. When it was the last,
// l is dropped if it was still forming, and its turn passes on if it had
// the turn and nobody took it: the directory is never left busy with
// nobody to send.
func (c *coalescer) leave(l *lookup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l.waiters--
	if l.waiters > 0 || l.started {
		return
	}
	if c.forming == l {
		c.forming = nil
		return
	}
	l.started = true
	c.nextLocked()
}

// nextLocked gives the turn to the forming lookup, if any; otherwise
// nothing is in flight any more.
func (c *coalescer) nextLocked() {
	if l := c.forming; l != nil {
		c.forming = nil
		close(l.turn)
		return
	}
	c.busy = false
}

// pick returns the entries of res for uids, as ClientIDs of uids alone
// returns them: the slices are the caller's own.
func pick(res map[string][]string, uids []string) map[string][]string {
	out := make(map[string][]string, len(uids))
	for _, uid := range uids {
		if ids, ok := res[uid]; ok {
			out[uid] = slices.Clone(ids)
		}
	}
	return out
}
