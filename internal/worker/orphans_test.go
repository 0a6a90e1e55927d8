package worker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/gateway"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// TestGatewayLostReportsCloses: when a gateway dies (its link breaks and the
// register drops it), the worker reports each of its clients closed, once,
// with the uid it had, code 1006 and GatewayLost set.
func TestGatewayLostReportsCloses(t *testing.T) {
	c := newCluster(t)
	dying := c.startGateway(gateway.Config{})
	other := c.startGateway(gateway.Config{})
	w := c.startWorker(dying, other)
	api := w.w.API()

	lost, kept := c.dial(dying, dialOptions{}), c.dial(other, dialOptions{})
	idLost, _ := c.idOf(lost, w)
	idKept, _ := c.idOf(kept, w)
	if err := api.BindUID(testCtx(t), idLost, "u-lost"); err != nil {
		t.Fatal(err)
	}
	lost.send(t, "carries the uid")
	eventually(t, "the message", func() bool { return len(w.rec.messagesOf(idLost)) == 1 })

	dying.grpc.Stop() // the link breaks; the gateway cannot report anything
	w.w.SetGateways([]*registerv1.Gateway{other.info()})

	eventually(t, "OnClose of the lost gateway's client", func() bool { return w.rec.has(idLost, evClose) })
	evs := w.rec.eventsOf(idLost)
	last := evs[len(evs)-1]
	if last.kind != evClose || !last.client.GatewayLost || last.client.CloseCode != int(websocket.StatusAbnormalClosure) || last.client.UID != "u-lost" {
		t.Errorf("close event %+v, want GatewayLost, code 1006, uid u-lost", last.client)
	}
	time.Sleep(200 * time.Millisecond) // a second report would come now
	if n := countKind(w.rec.eventsOf(idLost), evClose); n != 1 {
		t.Errorf("%d close events, want 1", n)
	}
	if w.rec.has(idKept, evClose) {
		t.Error("the client of the other gateway was reported closed")
	}
}

// TestGatewayLeavingReportsRealCloses: a gateway the register dropped keeps
// its link until it exits, so the closes it sends still arrive (not marked
// GatewayLost), and nothing is reported twice when it then goes.
func TestGatewayLeavingReportsRealCloses(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)

	w.w.SetGateways(nil) // the gateway deregistered, as a draining one does
	if err := cl.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "OnClose", func() bool { return w.rec.has(id, evClose) })
	g.grpc.Stop()
	time.Sleep(300 * time.Millisecond)
	evs := w.rec.eventsOf(id)
	if n := countKind(evs, evClose); n != 1 {
		t.Fatalf("%d close events, want 1", n)
	}
	if last := evs[len(evs)-1]; last.client.GatewayLost || last.client.CloseCode != int(websocket.StatusNormalClosure) {
		t.Errorf("close event %+v, want code 1000 from the gateway", last.client)
	}
}

// TestGatewayBackKeepsClients: a gateway dropped and listed again (a
// register blip) keeps its link: nothing is reported closed.
func TestGatewayBackKeepsClients(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	w.w.SetGateways(nil)
	w.w.SetGateways([]*registerv1.Gateway{g.info()})
	cl.send(t, "still here")
	eventually(t, "the message", func() bool { return slices.Equal(w.rec.messagesOf(id), []string{"still here"}) })
	if w.rec.has(id, evClose) {
		t.Error("a client of a gateway that came back was reported closed")
	}
}

func countKind(evs []event, k eventKind) int {
	n := 0
	for _, e := range evs {
		if e.kind == k {
			n++
		}
	}
	return n
}

// TestStateChangeReachesPipelinedEvents: frames sent right behind one whose
// handler binds or changes the session see the new uid and session, though
// the gateway read them before the change.
func TestStateChangeReachesPipelinedEvents(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway(gateway.Config{})
	w := c.startWorker(g)
	cl := c.dial(g, dialOptions{})
	id, _ := c.idOf(cl, w)
	release := w.rec.hold(t, "bind:u-new") // the next frames queue behind it
	cl.send(t, "bind:u-new")
	cl.send(t, `session:{"k":1}`)
	cl.send(t, "after")
	time.Sleep(100 * time.Millisecond) // let the gateway read all three
	release()
	eventually(t, "three messages", func() bool { return len(w.rec.messagesOf(id)) == 3 })
	evs := w.rec.eventsOf(id)
	last := evs[len(evs)-1]
	if last.client.UID != "u-new" || string(last.client.Session) != `{"k":1}` {
		t.Errorf("the frame after bind and session: UID %q, session %s; want u-new and {\"k\":1}", last.client.UID, last.client.Session)
	}
	if evs[len(evs)-2].client.UID != "u-new" {
		t.Errorf("the frame after bind: UID %q, want u-new", evs[len(evs)-2].client.UID)
	}
}
