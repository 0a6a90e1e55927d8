package gateway

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
)

// connBufferSize is the size of a connection's write buffer (its reads
// are buffered by its wire). net/http hands a hijacked connection 4 KiB;
// chat frames are a few hundred bytes and fit, larger ones pass the buffer
// by (one more syscall), and an idle connection is better off holding less.
const connBufferSize = 512

// hijacker is a ResponseWriter whose Hijack returns the connection as a
// wire that writes by rule, which it keeps for the gateway, with buffers
// over the wire in place of the server's. (The library keeps the
// bufio.Reader it is given but resets it to read the net.Conn; the wire
// keeps it too, to see what it holds: wire.idleNow.)
type hijacker struct {
	http.ResponseWriter
	rule *writeRule
	wire *wire
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // the 101 response, if still buffered
		_ = c.Close()
		return nil, nil, err
	}
	var early []byte // what the client sent after its request
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = bytes.Clone(b)
	}
	h.wire = newWire(c, early, h.rule)
	h.wire.br = bufio.NewReaderSize(h.wire, wireBufioSize)
	return h.wire, bufio.NewReadWriter(h.wire.br, bufio.NewWriterSize(h.wire, connBufferSize)), nil
}
