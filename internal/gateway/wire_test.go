package gateway_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
)

// rawClient speaks WebSocket by hand, to send frames in pieces and with
// pauses that a library client never makes.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(linktest.WaitFor))
	req := "GET /?tag=raw HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawClient{t: t, conn: conn, br: br}
}

// frame is a masked client frame with first byte b0.
func frame(b0 byte, payload string) []byte { return gateway.ClientFrame(b0, []byte(payload)) }

// send writes the pieces of b split at cuts, pausing between them so
// that the gateway finds the socket empty mid-frame.
func (c *rawClient) send(b []byte, cuts ...int) {
	c.t.Helper()
	last := 0
	for _, cut := range append(cuts, len(b)) {
		if _, err := c.conn.Write(b[last:cut]); err != nil {
			c.t.Fatal(err)
		}
		last = cut
		time.Sleep(20 * time.Millisecond)
	}
}

// next reads one server frame: its opcode and payload.
func (c *rawClient) next() (byte, string) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			c.t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatal(err)
	}
	return h[0] & 0x0f, string(p)
}

// TestSilentPauses checks that frames arriving in pieces, with the wire
// silent in between, read as they were sent: a gateway reader that gives
// up its goroutine on a silent wire must do so only between messages.
func TestSilentPauses(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{PingInterval: -1})
	w := c.StartWorker(g)
	cl := dialRaw(t, g.WSAddr)

	expect := func(op byte, payload string) {
		t.Helper()
		if gotOp, got := cl.next(); gotOp != op || got != payload {
			t.Fatalf("got frame op %d %q, want op %d %q", gotOp, got, op, payload)
		}
	}
	// Cut inside the header, inside the mask and inside the payload.
	cl.send(frame(0x81, "echo:one"), 1, 4, 9)
	expect(0x1, "one")
	// A 16-bit length cut inside its length.
	long := "echo:" + string(make([]byte, 300))
	cl.send(frame(0x81, long), 3)
	expect(0x1, long[5:])
	// A fragmented message with a ping between its fragments, and pauses.
	cl.send(frame(0x01, "echo:tw"))
	cl.send(frame(0x89, "hi"))
	expect(0xa, "hi")
	cl.send(frame(0x80, "o"), 2)
	expect(0x1, "two")
	// Frames pipelined in one write, the last one cut.
	pipelined := append(append(frame(0x81, "echo:a"), frame(0x81, "echo:b")...), frame(0x81, "echo:c")...)
	cl.send(pipelined, len(pipelined)-3)
	expect(0x1, "a")
	expect(0x1, "b")
	expect(0x1, "c")
	// Frames pipelined in one write, whole: after the first message, the
	// next one's first bytes wait in the library's buffer, not the socket.
	cl.send(append(frame(0x81, "echo:d"), frame(0x81, "echo:e")...))
	expect(0x1, "d")
	expect(0x1, "e")
	// Two short messages in one write fit the library's 16-byte buffer
	// whole: the second waits there, with the socket and the wire empty.
	id := w.Rec.IDByTag("raw")
	cl.send(append(frame(0x81, "x"), frame(0x81, "y")...))
	linktest.Eventually(t, "both short messages", func() bool {
		m := w.Rec.MessagesOf(id)
		return len(m) >= 2 && m[len(m)-2] == "x" && m[len(m)-1] == "y"
	})
	// A silent client is still a client: the gateway closes it on request
	// with a close handshake, which waits for the client's close frame.
	if err := w.W.API().CloseClient(linktest.Ctx(t), id, nil); err != nil {
		t.Fatal(err)
	}
	expect(0x8, "\x03\xe8")
	time.Sleep(50 * time.Millisecond) // the gateway waits, silent
	cl.send(frame(0x88, "\x03\xe8"))
	if _, err := cl.br.ReadByte(); err != io.EOF {
		t.Errorf("after the close handshake: %v, want EOF", err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	w.Rec.CheckNoProblems(t)
}
