package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The lines a process logs once it serves.
const (
	registerReady = `msg="register listening"`
	gatewayReady  = `msg="gateway listening"`
	workerReady   = `msg="push api listening"`
)

// respawn starts old's program again with the flags old had, so on the same
// addresses, and waits for its ready line. The new process belongs to the
// cluster: it is stopped when the cluster's test ends, or by c.stopAll once
// the caller has put it in its place. t is the (sub)test that fails when the
// process does not start.
func (c *cluster) respawn(t *testing.T, old *proc, ready string) *proc {
	t.Helper()
	base, _, _ := strings.Cut(old.name, ".")
	name := fmt.Sprintf("%s.n%d", base, len(c.procs))
	p, err := startProc(name, filepath.Base(old.cmd.Path), filepath.Join(c.logDir, name+".log"), old.cmd.Args[1:])
	if err != nil {
		t.Fatal(err)
	}
	c.t.Cleanup(func() { p.stop(c.t) })
	c.procs = append(c.procs, p)
	if err := p.waitLog(startTimeout, "ready line "+ready, func(log string) bool {
		return strings.Contains(log, ready)
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// respawnRegister starts the register again on its address.
func (c *cluster) respawnRegister(t *testing.T) {
	t.Helper()
	c.register = c.respawn(t, c.register, registerReady)
}

// respawnGateway starts gateway i again on its addresses (with a new
// gateway id) and waits until every worker is linked to it.
func (c *cluster) respawnGateway(t *testing.T, i int) {
	t.Helper()
	g := c.gateways[i]
	g.proc = c.respawn(t, g.proc, gatewayReady)
	c.waitLinked(t)
}

// respawnWorker starts worker i again on its addresses and waits until every
// gateway has it linked (and the dead one unlinked).
func (c *cluster) respawnWorker(t *testing.T, i int) {
	t.Helper()
	w := c.workers[i]
	w.proc = c.respawn(t, w.proc, workerReady)
	c.waitLinked(t)
}

// waitLinked waits until every gateway's log shows every worker linked, and
// no other.
func (c *cluster) waitLinked(t *testing.T) {
	t.Helper()
	for _, g := range c.gateways {
		err := g.waitLog(startTimeout, "links from every worker", func(log string) bool {
			return len(linkedWorkers(log)) == len(c.workers)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
