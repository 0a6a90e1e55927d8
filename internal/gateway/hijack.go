package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// connBufferSize is the size of a connection's read and write buffers.
// net/http hands a hijacked connection 4 KiB of each; chat frames are a few
// hundred bytes and fit, larger ones pass the buffers by (one more
// syscall), and an idle connection is better off holding less.
const connBufferSize = 512

// smallBuffers is a ResponseWriter whose Hijack returns the connection with
// connBufferSize buffers in place of the server's.
type smallBuffers struct{ http.ResponseWriter }

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // the 101 response, if still buffered
		_ = c.Close()
		return nil, nil, err
	}
	var r io.Reader = c
	if n := brw.Reader.Buffered(); n > 0 { // what the client sent after its request
		b, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(r, connBufferSize), bufio.NewWriterSize(c, connBufferSize)), nil
}
