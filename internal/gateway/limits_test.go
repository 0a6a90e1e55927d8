package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/gateway"
)

func TestConnectionLimits(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{MaxConns: 3, MaxConnsPerIP: 2})
	c.startWorker(g)
	c.dial(g, true)
	c.dial(g, true)
	if _, err := c.tryDial(g); err == nil {
		t.Fatal("a 3rd connection from one IP was accepted with -max-conns-per-ip 2")
	}
	g2 := c.startGateway(gateway.Config{MaxConns: 1, MaxConnsPerIP: -1})
	c.startWorker(g2)
	first := c.dial(g2, true)
	if _, err := c.tryDial(g2); err == nil {
		t.Fatal("a 2nd connection was accepted with -max-conns 1")
	}
	_ = first.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "a connection after the first closed", func() bool {
		cl, err := c.tryDial(g2)
		if err == nil {
			cl.read()
		}
		return err == nil
	})
}

func TestRateLimit(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{MessageRate: 1, MessageBurst: 2, RateStrikes: 3})
	w := c.startWorker(g)
	cl := c.dial(g, true)
	id, _ := c.idOf(cl, w)
	for range 2 {
		cl.send(t, "within burst")
	}
	eventually(t, "the burst forwarded", func() bool { return len(w.rec.messagesOf(id)) == 2 })
	// Over the limit: refused with an error frame each, until the strikes
	// are used up; then the client is closed with 1008.
	for range 3 {
		cl.send(t, "over")
	}
	got := cl.waitMessages(t, 3)
	for _, m := range got {
		if !strings.HasPrefix(m.data, `{"code":"rate_limited"`) {
			t.Errorf("client got %q, want the rate_limited error frame", m.data)
		}
	}
	cl.send(t, "abuse")
	if err := cl.waitClosed(t); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("abusive client closed with %v, want 1008", err)
	}
	if n := len(w.rec.messagesOf(id)); n != 2 {
		t.Errorf("worker saw %d messages, want only the 2 within the limit", n)
	}
}

func TestSendQueueBytes(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{SendQueueBytes: 64 << 10})
	w := c.startWorker(g)
	slow := c.dial(g, false)
	id, _ := c.idOf(slow, w)
	big := make([]byte, 32<<10)
	eventually(t, "the slow client closed", func() bool {
		_ = w.w.API().SendToClient(testCtx(t), id, big, true)
		return w.rec.has(id, evClose)
	})
}

func TestDrainTimeout(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{DrainTimeout: 300 * time.Millisecond})
	w := c.startWorker(g)
	deaf := c.dial(g, false) // never reads: never answers the close
	id, _ := c.idOf(deaf, w)
	done := make(chan struct{})
	go func() { g.gw.Close(websocket.StatusServiceRestart, "restart"); close(done) }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Close did not return after the drain timeout")
	}
	eventually(t, "OnClose of the deaf client", func() bool { return w.rec.has(id, evClose) })
}
