package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// errIdle is what a wire's Read returns, instead of blocking, when the
// client has sent nothing more and the stream rests between messages.
var errIdle = errors.New("gateway: connection idle")

// wire is a hijacked client connection as the websocket library gets it:
// its Read is what the library's bufio.Reader reads, its Write what the
// library's bufio.Writer flushes into (see outbox: it never blocks).
//
// An idle connection should cost little: a goroutine parked inside the
// library's Read sits ~2.2 KiB deep and so keeps a 4 KiB stack for the
// life of the connection. So, where the stream rests — every frame read
// in full, no fragmented message open — Read does not block: it reads
// what the socket holds, or returns errIdle. The library then returns
// that error from its Read untouched, having consumed nothing (a frame
// header's first byte was all it asked for), and the connection's reader
// goroutine ends; a new one waits for the socket, a few frames deep in a
// 2 KiB stack (waitReadable), and reads on.
//
// Read tracks frame boundaries by parsing the frame headers of the bytes
// it hands up. That is exact because bufio.Reader asks for more only once
// its buffer is empty, and the library reads the connection through
// ReadByte and Read alone: every byte handed up has been consumed.
//
// The read-ahead buffer is the wire's too, borrowed from a pool while
// bytes wait in it: the library's bufio.Reader gets the smallest buffer
// there is (wireBufioSize), and a silent connection holds none.
type wire struct {
	net.Conn
	raw syscall.RawConn // nil: no idling (not a socket), Read always blocks
	// ahead holds bytes read from the socket and not yet handed up: at
	// first what the client sent after its handshake request, which the
	// HTTP server had buffered; then the rest of a read into borrowed.
	ahead    []byte
	borrowed *[readAhead]byte
	// blocking, once set, makes every Read block: a close handshake
	// waits for the client's close frame. It is set under idleMu.
	blocking atomic.Bool
	// idleMu orders idleNow, which looks at the read state outside the
	// library's read lock, before the close handshake, whose reads may
	// run on another goroutine than the reader's.
	idleMu sync.Mutex
	frames frameTracker
	// drained is set when a read at rest took less than it asked for: the
	// socket held no more at that moment, so the next read at rest need
	// not ask it again to find it empty (see readSocket).
	drained bool
	// br is the library's bufio.Reader over the wire (nil when the wire
	// was made otherwise): what it holds the library has yet to consume.
	br  *bufio.Reader
	out outbox
}

// newWire wraps a hijacked connection; early is what the server had read
// past the handshake request, rule how it writes.
func newWire(c net.Conn, early []byte, rule *writeRule) *wire {
	w := &wire{Conn: c, ahead: early}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	w.out.rule = rule
	return w
}

// readAhead is how much a wire reads from the socket at once: chat frames
// are a few hundred bytes.
const readAhead = 512

// wireBufioSize is the buffer size of the bufio.Reader over a wire, the
// smallest bufio allows; the wire does the reading ahead.
const wireBufioSize = 16

var readAheadPool = sync.Pool{New: func() any { return new([readAhead]byte) }}

// Read implements net.Conn.
func (w *wire) Read(p []byte) (int, error) {
	if len(w.ahead) == 0 && len(p) < readAhead {
		b := readAheadPool.Get().(*[readAhead]byte)
		n, err := w.readSocket(b[:])
		if n == 0 {
			readAheadPool.Put(b)
			return 0, err
		}
		w.borrowed, w.ahead = b, b[:n]
	}
	if len(w.ahead) == 0 {
		n, err := w.readSocket(p)
		w.frames.feed(p[:n])
		return n, err
	}
	n := copy(p, w.ahead)
	w.frames.feed(p[:n])
	if w.ahead = w.ahead[n:]; len(w.ahead) == 0 {
		w.ahead = nil
		if w.borrowed != nil {
			readAheadPool.Put(w.borrowed)
			w.borrowed = nil
		}
	}
	return n, nil
}

// readSocket reads from the socket: without waiting where the stream
// rests, waiting elsewhere. Where it rests after a read that drained the
// socket, it returns errIdle without a system call: waitReadable looks at
// the socket before it parks, so whatever came since is not missed, and a
// message of one segment costs one read, not a read and an empty one.
func (w *wire) readSocket(p []byte) (int, error) {
	if w.mayIdle() {
		if w.drained {
			w.drained = false
			return 0, errIdle
		}
		n, err := w.readNow(p)
		w.drained = err == nil && n < len(p)
		return n, err
	}
	w.drained = false
	return w.Conn.Read(p)
}

// mayIdle reports whether a read may answer errIdle instead of waiting:
// no close handshake waits, the wire is a socket and the stream rests.
// blocking comes first: once it is set, the close handshake may be reading
// on another goroutine than the caller's, and the read state may not be
// looked at (see idleNow).
func (w *wire) mayIdle() bool {
	return !w.blocking.Load() && w.raw != nil && w.frames.resting()
}

// idleNow reports whether the library's next read would get errIdle
// without a system call — the stream rests, the last read at rest drained
// the socket and nothing waits in the wire or the library's buffer — and
// then consumes that answer as readSocket would. The reader asks before
// each message, so that going idle costs no trip through the library, which
// takes its read lock and wraps the error twice with fmt.Errorf.
func (w *wire) idleNow() bool {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	if !w.mayIdle() || !w.drained || len(w.ahead) > 0 || w.br == nil || w.br.Buffered() > 0 {
		return false
	}
	w.drained = false
	return true
}

// readNow reads what the socket holds without waiting: errIdle when it
// holds nothing.
func (w *wire) readNow(p []byte) (int, error) {
	n, err := noWait("read", w.raw.Read, readNoWait, p)
	switch {
	case err == syscall.EAGAIN:
		return 0, errIdle
	case err != nil:
		return 0, err
	case n <= 0:
		return 0, io.EOF
	}
	return n, nil
}

// noWait makes the system call call on the socket once, through raw's
// Read or Write, without waiting for it to be ready; only an interrupted
// call is made again. Its errors are syscall.EAGAIN as it is (not ready),
// raw's own (the connection is closed), or the call's as a net.OpError
// for op.
func noWait(op string, raw func(func(fd uintptr) bool) error, call func(fd int, p []byte) (int, error), p []byte) (int, error) {
	var n int
	var errno error
	if err := raw(func(fd uintptr) bool {
		for {
			if n, errno = call(int(fd), p); errno != syscall.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case errno == syscall.EAGAIN:
		return 0, errno
	case errno != nil:
		return 0, &net.OpError{Op: op, Net: "tcp", Err: errno}
	}
	return n, nil
}

// writeNoWait and readNoWait are write(2) and read(2) on a non-blocking
// socket, made as raw system calls: the Go scheduler is not told, as it is
// by syscall.Write and syscall.Read. A call on a non-blocking socket never
// waits, and telling the scheduler costs more than it saves here: it wakes
// Go's sysmon thread when the process was asleep, and lets sysmon hand the
// P to another thread during a write that takes the kernel long (the
// loopback TCP path delivers to the receiver inline). A 10,000-member
// fan-out took 11-29% less gateway CPU with them (bench/HISTORY.md).
// The peek of waitReadable, once per message that comes in, stays a
// plain call: no gain was measured for it.
func writeNoWait(fd int, p []byte) (int, error) {
	return rawNoWait(syscall.SYS_WRITE, fd, p)
}

func readNoWait(fd int, p []byte) (int, error) {
	return rawNoWait(syscall.SYS_READ, fd, p)
}

func rawNoWait(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// waitReadable parks until the socket has something to read: data, its
// end, or an error. It looks once, before parking, as it must: RawConn.Read
// first forgets any readiness the poller noted, so data that came since
// the last read would not wake it. After a wake it does not look again: a
// wake with nothing to read (readiness already consumed) just costs the
// reader one empty read and a new wait. It returns at once on a
// connection that cannot idle.
func (w *wire) waitReadable() {
	if w.raw == nil {
		return
	}
	woken := false
	var b [1]byte
	_ = w.raw.Read(func(fd uintptr) bool {
		if woken {
			return true
		}
		woken = true
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return n > 0 || err != syscall.EAGAIN
	})
}

// blockFromNowOn makes every later Read block, as a close handshake needs.
func (w *wire) blockFromNowOn() {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	w.blocking.Store(true)
}

// frameTracker follows the frame structure of a client's byte stream
// (RFC 6455 section 5.2) to tell where it rests.
type frameTracker struct {
	header   [14]byte // the current frame's header, as far as seen
	seen     int      // bytes of header seen
	payload  uint64   // payload bytes of the current frame still to come
	fragment bool     // a data message is open: its final frame is to come
}

// resting reports whether the stream is between messages: the last frame
// was read in full and no fragmented message is open.
func (t *frameTracker) resting() bool {
	return t.seen == 0 && t.payload == 0 && !t.fragment
}

// feed advances the tracker over b, the next bytes of the stream.
func (t *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.payload > 0 {
			k := min(uint64(len(b)), t.payload)
			t.payload -= k
			b = b[k:]
			continue
		}
		t.header[t.seen] = b[0]
		t.seen++
		b = b[1:]
		if t.seen < 2 || t.seen < headerLength(t.header[1]) {
			continue
		}
		t.payload = payloadLength(t.header[:t.seen])
		if opcode := t.header[0] & 0x0f; opcode < 0x8 { // continuation, text or binary
			t.fragment = t.header[0]&0x80 == 0
		}
		t.seen = 0
	}
}

// headerLength is the length of a frame header whose second byte is b1.
func headerLength(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 { // masked
		n += 4
	}
	return n
}

// payloadLength is the payload length a complete frame header gives.
func payloadLength(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(h[2])<<8 | uint64(h[3])
	case 127:
		var n uint64
		for _, b := range h[2:10] {
			n = n<<8 | uint64(b)
		}
		return n
	default:
		return uint64(l)
	}
}
