package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// gatewayDrainWait bounds how long a SIGTERMed gateway may take to drain and exit
// (its -drain-timeout is the default 10s). It bounds a wait; it does not
// measure speed.
const gatewayDrainWait = 20 * time.Second

// TestGatewayDrain: SIGTERM on a gateway closes its clients with 1012
// (service restart) so that they reconnect elsewhere, takes it out of the
// register (its uids are offline), exits cleanly, and leaves the rest of
// the cluster working.
func TestGatewayDrain(t *testing.T) {
	c := startCluster(t)
	leaving := c.dial(t, 0, "client of the draining gateway")
	leaving.bind("7001")
	staying := c.dial(t, 1, "client of the other gateway")
	staying.bind("7002")

	g := c.gateways[0].proc
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case in := <-leaving.in:
		if code := websocket.CloseStatus(in.err); code != websocket.StatusServiceRestart {
			t.Errorf("the draining gateway's client got %v (%q), want a 1012 close", in.err, in.data)
		}
	case <-time.After(gatewayDrainWait):
		t.Fatal("the draining gateway's client was not closed")
	}
	select {
	case <-g.exited:
		g.stopped = true // exited as asked: nothing left to stop
		if !g.cmd.ProcessState.Success() {
			t.Errorf("the gateway exited with %v after SIGTERM", g.cmd.ProcessState)
		}
	case <-time.After(gatewayDrainWait):
		t.Fatal("the gateway did not exit after SIGTERM")
	}
	if err := c.register.waitLog(gatewayDrainWait, "the gateway leaving the register", func(log string) bool {
		return strings.Contains(log, `msg="gateway left"`)
	}); err != nil {
		t.Error(err)
	}

	pc := pushClient(t, c.workers[0].pushAddr, c.pushToken)
	if online, err := isUIDOnline(context.Background(), pc, "7001"); err != nil || online {
		t.Errorf("uid of the drained gateway's client: online %v, %v; want offline", online, err)
	}
	again := c.dial(t, 1, "the client, reconnected")
	again.bind("7001")
	staying.say("7002", "7001", "after the drain")
	if f := again.expect("text"); f.str("data") != "after the drain" {
		t.Errorf("reconnected client got %s", f.raw)
	}
	if f := staying.expect("save"); string(f.fields["is_read"]) != "1" {
		t.Errorf("sender got %s, want is_read 1", f.raw)
	}
}
