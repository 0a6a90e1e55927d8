package gateway

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// errBacklogFull is a write refused because the bytes owed to the client
// would pass the outbox's hard limit.
var errBacklogFull = errors.New("gateway: client send backlog full")

// outbox is the write side of a wire: its Write never blocks the caller.
//
// A frame costs one write system call in the goroutine that sends it (the
// link that received the command, for a fan-out one per member): no
// writer goroutine, no timer. Where the socket does not take all of it
// (the client reads slowly), the rest waits in a backlog, and a flusher
// goroutine, running only while there is one, writes it with a deadline;
// writes that come meanwhile join the backlog, behind it. The backlog is
// bounded twice: the connection closes a client as too slow before it
// owes more than its send queue allows (conn.enqueue), and the outbox
// itself refuses to owe more than limit, which only the frames the
// websocket library writes on its own (pongs, a close) can reach.
type outbox struct {
	conn net.Conn
	raw  syscall.RawConn // nil: no write without waiting; every write goes through the flusher
	rule *writeRule

	mu       sync.Mutex // guards the fields below
	backlog  []byte     // bytes accepted and not yet handed to the flusher
	owed     int64      // bytes accepted and not yet in the socket: backlog and the flusher's
	flushing bool       // the flusher runs: a write may not overtake it
	err      error      // the first write error; every later write fails with it
	broken   func()     // runs, on a goroutine of its own, when err is set
}

// writeRule is how a gateway's outboxes write: how long a client's socket
// may take no bytes while some wait for it, and how many bytes an outbox
// may owe at most.
type writeRule struct {
	timeout time.Duration
	limit   int64
}

// Write implements net.Conn: it writes what the socket takes at once and
// keeps the rest for the flusher.
func (o *outbox) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n := 0
	if !o.flushing && o.raw != nil {
		var err error
		if n, err = o.writeNow(p); err != nil {
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
		go o.flush()
	}
	return len(p), nil
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

// pending is how many bytes the client is owed.
func (o *outbox) pending() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owed
}

// writeNow writes what the socket takes without waiting: possibly
// nothing.
func (o *outbox) writeNow(p []byte) (int, error) {
	n, err := noWait("write", o.raw.Write, syscall.Write, p)
	if err == syscall.EAGAIN {
		return 0, nil
	}
	return n, err
}

// flush writes the backlog until it is empty or a write fails, which
// breaks the outbox for good.
func (o *outbox) flush() {
	for {
		o.mu.Lock()
		buf := o.backlog
		o.backlog = nil
		if len(buf) == 0 || o.err != nil {
			o.flushing = false
			// Writes without waiting follow; a deadline left behind would
			// fail them once it passed.
			_ = o.conn.SetWriteDeadline(time.Time{})
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		err := o.writeAll(buf)
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
func (o *outbox) writeAll(b []byte) error {
	for {
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.rule.timeout))
		n, err := o.conn.Write(b)
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
