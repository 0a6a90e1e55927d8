package gateway

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// errBacklogFull is a write refused because the bytes owed to the client
// would pass the wire's hard limit.
var errBacklogFull = errors.New("gateway: client send backlog full")

// outbox is the write side of a wire, whose Write never blocks the caller.
//
// A frame costs one write system call in the goroutine that sends it (the
// link that received the command; for a fan-out, one per member): no
// writer goroutine, no timer. Where the socket does not take all of it
// (the client reads slowly), the rest waits in a backlog, and a flusher
// goroutine, running only while there is one, writes it with a deadline;
// writes that come meanwhile join the backlog, behind it. The backlog is
// bounded twice: the connection closes a client as too slow before it
// owes more than its send queue allows (conn.enqueue), and the wire itself
// refuses to owe more than rule.limit, which only the frames the websocket
// library writes on its own (pongs, a close) can reach. A wire without a
// RawConn writes everything through the flusher.
type outbox struct {
	rule *writeRule

	mu       sync.Mutex // guards the fields below
	backlog  []byte     // bytes accepted and not yet handed to the flusher
	owed     int64      // bytes accepted and not yet in the socket: backlog and the flusher's
	flushing bool       // the flusher runs: a write may not overtake it
	err      error      // the first write error; every later write fails with it
	broken   func()     // runs, on a goroutine of its own, when err is set
}

// writeRule is how a gateway's wires write: how long a client's socket may
// take no bytes while some wait for it, and how many bytes a wire may owe
// at most.
type writeRule struct {
	timeout time.Duration
	limit   int64
}

// Write implements net.Conn: it writes what the socket takes at once and
// keeps the rest for the flusher.
func (w *wire) Write(p []byte) (int, error) {
	o := &w.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n := 0
	if !o.flushing && w.raw != nil {
		var err error
		if n, err = w.writeNow(p); err != nil {
			o.fail(err)
			return n, err
		}
		if n == len(p) {
			return n, nil
		}
	}
	rest := p[n:]
	if o.owed+int64(len(rest)) > o.rule.limit {
		o.fail(errBacklogFull)
		return n, errBacklogFull
	}
	o.backlog = append(o.backlog, rest...)
	o.owed += int64(len(rest))
	if !o.flushing {
		o.flushing = true
		go w.flush()
	}
	return len(p), nil
}

// onBroken makes f run when a write the caller did not wait for fails.
func (w *wire) onBroken(f func()) {
	w.out.mu.Lock()
	w.out.broken = f
	w.out.mu.Unlock()
}

// pending is how many bytes written to the wire the client has yet to be
// sent.
func (w *wire) pending() int64 {
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	return w.out.owed
}

// fail marks the outbox broken by err, unless it already is; o.mu is held.
// broken runs on its own goroutine: the caller may be inside the websocket
// library, holding its locks.
func (o *outbox) fail(err error) {
	if o.err != nil {
		return
	}
	o.err = err
	if o.broken != nil {
		go o.broken()
	}
}

// writeNow writes what the socket takes without waiting: possibly
// nothing.
func (w *wire) writeNow(p []byte) (int, error) {
	n, err := noWait("write", w.raw.Write, writeNoWait, p)
	if err == syscall.EAGAIN {
		return 0, nil
	}
	return n, err
}

// flush writes the backlog until it is empty or a write fails, which
// breaks the wire's writing for good.
func (w *wire) flush() {
	o := &w.out
	for {
		o.mu.Lock()
		buf := o.backlog
		o.backlog = nil
		if len(buf) == 0 || o.err != nil {
			o.flushing = false
			// Writes without waiting follow; a deadline left behind would
			// fail them once it passed.
			_ = w.SetWriteDeadline(time.Time{})
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		err := w.writeAll(buf)
		o.mu.Lock()
		o.owed -= int64(len(buf))
		if err != nil {
			o.fail(err)
		}
		o.mu.Unlock()
	}
}

// writeAll writes b, waiting for the socket; it fails when the socket
// takes nothing for the rule's timeout.
func (w *wire) writeAll(b []byte) error {
	for {
		_ = w.SetWriteDeadline(time.Now().Add(w.out.rule.timeout))
		n, err := w.Conn.Write(b)
		b = b[n:]
		var ne net.Error
		switch {
		case err == nil:
			return nil
		case n > 0 && errors.As(err, &ne) && ne.Timeout():
			continue // slow, not stuck
		default:
			return err
		}
	}
}
