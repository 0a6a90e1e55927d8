package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// registerOutage is how long TestRegisterLongOutage keeps the register
// down: long enough for gRPC's default reconnection backoff (1 s, growing
// by 1.6 to 120 s) to wait past the register's start grace of one lease.
const registerOutage = 12 * time.Second

// TestRegisterLongOutage kills the register with SIGKILL, keeps it down
// for registerOutage and starts it again: every gateway must renew its
// lease within the restarted register's start grace, so that no lease
// lapses, no gateway's entries are purged and every worker stays linked to
// every gateway; both gateways then still serve the chat.
func TestRegisterLongOutage(t *testing.T) {
	c := startCluster(t)
	c.register.kill(t)
	time.Sleep(registerOutage)
	c.respawnRegister(t)
	time.Sleep(3 * lease) // past the grace: a gateway that has not renewed by now is dropped
	if log := c.register.log(); strings.Contains(log, "gateway lease lapsed") {
		t.Fatalf("a gateway's lease lapsed after the register came back; register log:\n%s", c.register.tail(logTailLines))
	}
	for _, g := range c.gateways {
		if strings.Contains(g.log(), `msg="worker unlinked"`) {
			t.Errorf("%s lost a worker link", g.name)
		}
	}
	for i := range c.gateways {
		cl := c.dial(t, i, fmt.Sprintf("after%d", i))
		cl.closeNow()
	}
}
