package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
)

func TestConnectionLimits(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{MaxConns: 3, MaxConnsPerIP: 2})
	c.StartWorker(g)
	c.Dial(g)
	c.Dial(g)
	if _, err := c.TryDial(g, linktest.DialOptions{}); err == nil {
		t.Fatal("a 3rd connection from one IP was accepted with -max-conns-per-ip 2")
	}
	g2 := c.StartGateway(gateway.Config{MaxConns: 1, MaxConnsPerIP: -1})
	c.StartWorker(g2)
	first := c.Dial(g2)
	if _, err := c.TryDial(g2, linktest.DialOptions{}); err == nil {
		t.Fatal("a 2nd connection was accepted with -max-conns 1")
	}
	_ = first.WS.Close(websocket.StatusNormalClosure, "")
	linktest.Eventually(t, "a connection after the first closed", func() bool {
		cl, err := c.TryDial(g2, linktest.DialOptions{})
		if err == nil {
			cl.Read()
		}
		return err == nil
	})
}

func TestRateLimit(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{MessageRate: 1, MessageBurst: 2, RateStrikes: 3})
	w := c.StartWorker(g)
	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	for range 2 {
		cl.Send(t, "within burst")
	}
	linktest.Eventually(t, "the burst forwarded", func() bool { return len(w.Rec.MessagesOf(id)) == 2 })
	// Over the limit: refused with an error frame each, until the strikes
	// are used up; then the client is closed with 1008.
	for range 3 {
		cl.Send(t, "over")
	}
	got := cl.WaitMessages(t, 3)
	for _, m := range got {
		if !strings.HasPrefix(m.Data, `{"code":"rate_limited"`) {
			t.Errorf("client got %q, want the rate_limited error frame", m.Data)
		}
	}
	cl.Send(t, "abuse")
	if err := cl.WaitClosed(t); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("abusive client closed with %v, want 1008", err)
	}
	if n := len(w.Rec.MessagesOf(id)); n != 2 {
		t.Errorf("worker saw %d messages, want only the 2 within the limit", n)
	}
}

func TestSendQueueBytes(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{SendQueueBytes: 64 << 10})
	w := c.StartWorker(g)
	slow := c.DialWith(g, linktest.DialOptions{NoRead: true})
	id, _ := c.IDOf(slow, w)
	big := make([]byte, 32<<10)
	linktest.Eventually(t, "the slow client closed", func() bool {
		_ = w.W.API().SendToClient(linktest.Ctx(t), id, big, true)
		return w.Rec.Has(id, linktest.EvClose)
	})
}

func TestDrainTimeout(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{DrainTimeout: 300 * time.Millisecond})
	w := c.StartWorker(g)
	deaf := c.DialWith(g, linktest.DialOptions{NoRead: true}) // never reads: never answers the close
	id, _ := c.IDOf(deaf, w)
	done := make(chan struct{})
	go func() { g.GW.Close(websocket.StatusServiceRestart, "restart"); close(done) }()
	select {
	case <-done:
	case <-time.After(linktest.WaitFor):
		t.Fatal("Close did not return after the drain timeout")
	}
	linktest.Eventually(t, "OnClose of the deaf client", func() bool { return w.Rec.Has(id, linktest.EvClose) })
}
