package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// outboxWait bounds what these tests wait for.
const outboxWait = 20 * time.Second

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	return server, client
}

// TestOutboxNeverBlocks writes far more than the socket buffers hold to a
// client that is not reading: every Write returns, and once the client
// reads it gets every byte, in order.
//
// The bytes are made before the first write, and the write timeout is far
// longer than the writes take: while the client does not read, the socket
// takes nothing, and a flusher that waited out the timeout would break the
// wire (under -race on a loaded machine, making the bytes between the
// writes once took longer than the 5 s this test used to allow, and the
// read below then waited forever for bytes the broken wire had dropped).
func TestOutboxNeverBlocks(t *testing.T) {
	server, client := tcpPair(t)
	w := newWire(server, nil, &writeRule{timeout: 2 * outboxWait, limit: 64 << 20})
	const chunkSize, chunks = 64 << 10, 256 // 16 MiB
	want := make([]byte, chunkSize*chunks)
	for i := range want {
		want[i] = byte(i/chunkSize + i%chunkSize)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range chunks {
			chunk := want[i*chunkSize : (i+1)*chunkSize]
			if n, err := w.Write(chunk); n != len(chunk) || err != nil {
				t.Errorf("write %d: %d, %v", i, n, err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(outboxWait):
		t.Fatal("writes to a client that does not read blocked")
	}
	if t.Failed() {
		t.FailNow()
	}
	if w.pending() == 0 {
		t.Fatal("nothing pending after 16 MiB to a client that does not read")
	}
	// A wire that broke would leave the read waiting: bound it.
	_ = client.SetReadDeadline(time.Now().Add(outboxWait))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("read the backlog: %v (wire pending %d)", err, w.pending())
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the client got the bytes changed or out of order")
	}
	for w.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	// With the backlog written, writes go straight to the socket again.
	if n, err := w.Write([]byte("after")); n != 5 || err != nil {
		t.Fatalf("write after the backlog: %d, %v", n, err)
	}
	b := make([]byte, 5)
	_ = client.SetReadDeadline(time.Now().Add(outboxWait))
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "after" {
		t.Fatalf("read after the backlog: %q, %v", b, err)
	}
}

// TestOutboxStuckClient checks that a backlog the socket takes nothing of
// for the timeout breaks the wire for good.
func TestOutboxStuckClient(t *testing.T) {
	server, _ := tcpPair(t)
	w := newWire(server, nil, &writeRule{timeout: 100 * time.Millisecond, limit: 64 << 20})
	broken := make(chan struct{})
	w.onBroken(func() { close(broken) })
	chunk := make([]byte, 1<<20)
	// More than the socket buffers hold; on a slow machine the timeout may
	// break the wire before the last of these writes.
	for range 16 {
		if _, err := w.Write(chunk); err != nil {
			break
		}
	}
	select {
	case <-broken:
	case <-time.After(outboxWait):
		t.Fatal("a stuck client did not break the wire")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("a broken wire took a write")
	}
}

// TestOutboxLimit checks that a write that would make the wire owe more
// than its limit fails and breaks the wire.
func TestOutboxLimit(t *testing.T) {
	server, _ := tcpPair(t)
	w := newWire(server, nil, &writeRule{timeout: outboxWait, limit: 4 << 20})
	broken := make(chan struct{})
	w.onBroken(func() { close(broken) })
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; i < 64 && err == nil; i++ {
		_, err = w.Write(chunk)
	}
	if !errors.Is(err, errBacklogFull) {
		t.Fatalf("writes past the limit: err = %v, want errBacklogFull", err)
	}
	if p := w.pending(); p > 4<<20 {
		t.Errorf("the wire owes %d bytes, past its limit of %d", p, 4<<20)
	}
	select {
	case <-broken:
	case <-time.After(outboxWait):
		t.Fatal("a full backlog did not break the wire")
	}
}

// TestOutboxWithoutRawConn checks a wire over a connection that is not a
// socket (no syscall.RawConn): every write goes through the flusher, none
// blocks, and the peer gets the bytes in order.
func TestOutboxWithoutRawConn(t *testing.T) {
	server, client := net.Pipe() // synchronous: a write waits for the reader
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	w := newWire(server, nil, &writeRule{timeout: outboxWait, limit: 1 << 20})
	if w.raw != nil {
		t.Fatal("a pipe has a RawConn")
	}
	for _, s := range []string{"one ", "two ", "three"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d, %v", s, n, err)
		}
	}
	got := make([]byte, len("one two three"))
	_ = client.SetReadDeadline(time.Now().Add(outboxWait))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "one two three" {
		t.Fatalf("the peer read %q, %v", got, err)
	}
}
