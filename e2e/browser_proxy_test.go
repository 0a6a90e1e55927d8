package e2e

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// cutProxy is a TCP proxy on 127.0.0.1 in front of one address, through
// which a browser tab loads the page and opens its WebSocket. cut drops
// every connection and refuses new ones, as a lost network does; restore
// lets connections through again. It stops, and waits for its goroutines,
// when the test ends.
type cutProxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startCutProxy starts a proxy to target and returns it; its address is
// proxy.addr().
func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &cutProxy{lis: lis, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.lis.Addr().String() }

func (p *cutProxy) acceptLoop() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close() // refused, as by a dead network
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// serve pipes c to a new connection to the target until either side ends
// or the proxy cuts them.
func (p *cutProxy) serve(c net.Conn) {
	defer p.forget(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		_ = up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err == nil || errors.Is(err, net.ErrClosed) {
			// src ended: pass the end on so the other side sees it.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	// One direction ended; end both, so that the other copy returns.
	_ = c.Close()
	_ = up.Close()
	<-done
}

func (p *cutProxy) forget(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut drops every open connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// restore lets connections through again.
func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// close stops the proxy, drops its connections and waits for its
// goroutines.
func (p *cutProxy) close() {
	_ = p.lis.Close()
	p.cut()
	p.wg.Wait()
}
