package worker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatewire/gatewire/internal/gateway"
	"github.com/gatewire/gatewire/internal/linktest"
	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// TestGatewayLostReportsCloses: when a gateway dies (its link breaks and the
// register drops it), the worker reports each of its clients closed, once,
// with the uid it had, code 1006 and GatewayLost set.
func TestGatewayLostReportsCloses(t *testing.T) {
	c := linktest.New(t)
	dying := c.StartGateway(gateway.Config{})
	other := c.StartGateway(gateway.Config{})
	w := c.StartWorker(dying, other)
	api := w.W.API()

	lost, kept := c.Dial(dying), c.Dial(other)
	idLost, _ := c.IDOf(lost, w)
	idKept, _ := c.IDOf(kept, w)
	if err := api.BindUID(linktest.Ctx(t), idLost, "u-lost"); err != nil {
		t.Fatal(err)
	}
	lost.Send(t, "carries the uid")
	linktest.Eventually(t, "the message", func() bool { return len(w.Rec.MessagesOf(idLost)) == 1 })

	dying.StopLinks() // the link breaks; the gateway cannot report anything
	w.W.SetGateways([]*registerv1.Gateway{other.Info()})

	linktest.Eventually(t, "OnClose of the lost gateway's client", func() bool { return w.Rec.Has(idLost, linktest.EvClose) })
	evs := w.Rec.EventsOf(idLost)
	last := evs[len(evs)-1]
	if last.Kind != linktest.EvClose || !last.Client.GatewayLost || last.Client.CloseCode != int(websocket.StatusAbnormalClosure) || last.Client.UID != "u-lost" {
		t.Errorf("close event %+v, want GatewayLost, code 1006, uid u-lost", last.Client)
	}
	time.Sleep(200 * time.Millisecond) // a second report would come now
	if n := countKind(w.Rec.EventsOf(idLost), linktest.EvClose); n != 1 {
		t.Errorf("%d close events, want 1", n)
	}
	if w.Rec.Has(idKept, linktest.EvClose) {
		t.Error("the client of the other gateway was reported closed")
	}
}

// TestGatewayLeavingReportsRealCloses: a gateway the register dropped keeps
// its link until it exits, so the closes it sends still arrive (not marked
// GatewayLost), and nothing is reported twice when it then goes.
func TestGatewayLeavingReportsRealCloses(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)

	w.W.SetGateways(nil) // the gateway deregistered, as a draining one does
	if err := cl.WS.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	linktest.Eventually(t, "OnClose", func() bool { return w.Rec.Has(id, linktest.EvClose) })
	g.StopLinks()
	time.Sleep(300 * time.Millisecond)
	evs := w.Rec.EventsOf(id)
	if n := countKind(evs, linktest.EvClose); n != 1 {
		t.Fatalf("%d close events, want 1", n)
	}
	if last := evs[len(evs)-1]; last.Client.GatewayLost || last.Client.CloseCode != int(websocket.StatusNormalClosure) {
		t.Errorf("close event %+v, want code 1000 from the gateway", last.Client)
	}
}

// TestGatewayBackKeepsClients: a gateway dropped and listed again (a
// register blip) keeps its link: nothing is reported closed.
func TestGatewayBackKeepsClients(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	w.W.SetGateways(nil)
	w.W.SetGateways([]*registerv1.Gateway{g.Info()})
	cl.Send(t, "still here")
	linktest.Eventually(t, "the message", func() bool { return slices.Equal(w.Rec.MessagesOf(id), []string{"still here"}) })
	if w.Rec.Has(id, linktest.EvClose) {
		t.Error("a client of a gateway that came back was reported closed")
	}
}

func countKind(evs []linktest.Event, k linktest.EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestStateChangeReachesPipelinedEvents: frames sent right behind one whose
// handler binds or changes the session see the new uid and session, though
// the gateway read them before the change.
func TestStateChangeReachesPipelinedEvents(t *testing.T) {
	c := linktest.New(t)
	g := c.StartGateway(gateway.Config{})
	w := c.StartWorker(g)
	cl := c.Dial(g)
	id, _ := c.IDOf(cl, w)
	release := w.Rec.Hold(t, "bind:u-new") // the next frames queue behind it
	cl.Send(t, "bind:u-new")
	cl.Send(t, `session:{"k":1}`)
	cl.Send(t, "after")
	time.Sleep(100 * time.Millisecond) // let the gateway read all three
	release()
	linktest.Eventually(t, "three messages", func() bool { return len(w.Rec.MessagesOf(id)) == 3 })
	evs := w.Rec.EventsOf(id)
	last := evs[len(evs)-1]
	if last.Client.UID != "u-new" || string(last.Client.Session) != `{"k":1}` {
		t.Errorf("the frame after bind and session: UID %q, session %s; want u-new and {\"k\":1}", last.Client.UID, last.Client.Session)
	}
	if evs[len(evs)-2].Client.UID != "u-new" {
		t.Errorf("the frame after bind: UID %q, want u-new", evs[len(evs)-2].Client.UID)
	}
}
