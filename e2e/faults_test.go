package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// The phases of a fault run. They bound waits, they do not measure speed.
const (
	// warmUp is how long the load runs before the fault.
	warmUp = 1500 * time.Millisecond
	// afterFault is how long the load runs on once the cluster is whole
	// again.
	afterFault = 2 * time.Second
	// loadReady bounds how long the load's users may take to bind at the
	// start.
	loadReady = 10 * time.Second
	// drainWait bounds how long the users may take to get a save for
	// every say once they stop sending new ones.
	drainWait = 20 * time.Second
	// lateTexts is how long the users keep reading after the drain before
	// they fetch their history: room for late or duplicate texts.
	lateTexts = time.Second
	// sweepWait bounds the final history fetch.
	sweepWait = 20 * time.Second
	// registerDown, redisDown and postgresDown are how long each stays
	// down before it is started again.
	registerDown = time.Second
	redisDown    = time.Second
	postgresDown = 3 * time.Second
)

// TestFaults runs five faults, one after the other, on one cluster (Redis,
// PostgreSQL, a register, two gateways, two workers, each its own process),
// each under a steady 1:1 load across the two gateways: a gateway killed
// with SIGKILL (and started again), a worker killed (and started again), the
// register killed and started again, Redis flushed and then restarted, and
// PostgreSQL stopped for a few seconds and started again.
//
// Each fault gets users of its own: loadPairs pairs, the two users of a
// pair on different gateways, each sending 20 says a second with a cmid,
// reconnecting to either gateway after a drop, binding again, catching up
// through history, and sending every unacknowledged say again with the same
// cmid until it gets its save. After the fault the load runs on a while,
// stops, and drains. Then every acknowledged message must be in PostgreSQL
// exactly once with the msg_id of its save and must have reached the peer,
// as a text frame or through history; no text frame may come twice; and the
// Push API must have reported who is online correctly within onlineWithin
// of the fault. In the PostgreSQL fault, every say sent while the store is
// down must get an error frame naming its cmid, and none a save.
//
// Each fault prints a line of figures, on stdout too:
//
//	FAULT fault=<name> sent=N acked=N delivered=N lost=0 duplicated=0 online_s=S live=N via_history=N ...
//
// where online_s is the seconds from the fault until the Push API reported
// the truth.
func TestFaults(t *testing.T) {
	c := startCluster(t)
	push := pushClient(t, c.workers[1].pushAddr, c.pushToken) // worker1 is never killed
	faults := []struct {
		name   string
		inject func(t *testing.T, r *faultRun)
	}{
		{"gateway-kill", injectGatewayKill},
		{"worker-kill", injectWorkerKill},
		{"register-restart", injectRegisterRestart},
		{"redis-flush-restart", injectRedisFlushRestart},
		{"postgres-restart", injectPostgresRestart},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			r := startFaultRun(t, c, push, fmt.Sprintf("f%d", i+1))
			time.Sleep(warmUp)
			f.inject(t, r)
			time.Sleep(afterFault)
			r.probe.watch(t, time.Now())
			r.probe.settle(t) // still correct at the end
			r.finish(t, f.name)
		})
	}
	c.stopAll()
}

// faultRun is one fault's load and what the test measured.
type faultRun struct {
	c      *cluster
	tag    string // prefix of the run's uids
	sides  []*loadSide
	stop   func() // ends the load at once and waits for it
	probe  *onlineProbe
	leaver *client // leaves at the fault: must then be offline

	online time.Duration // from the fault until online state was correct
	extra  []string      // more figures, key=value
	outage *outage       // when the store was down, in the PostgreSQL fault
}

// startFaultRun starts the load of one fault run and waits until every
// user is bound; it binds a uid that stays online and one that leaves at
// the fault. The load stops when t ends.
func startFaultRun(t *testing.T, c *cluster, push pushv1.PushServiceClient, tag string) *faultRun {
	t.Helper()
	r := &faultRun{c: c, tag: tag}
	r.startLoad(t, []string{c.gateways[0].wsURL, c.gateways[1].wsURL}, func() {
		stayer := c.dial(t, 1, tag+"-stay")
		stayer.bind(tag + "-stay")
		r.leaver = c.dial(t, 1, tag+"-leave")
		r.leaver.bind(tag + "-leave")
		r.probe = newOnlineProbe(push, r.sides, map[string]bool{
			tag + "-stay": true, tag + "-leave": true, tag + "-never": false,
		})
	})
	return r
}

// startLoad starts loadPairs pairs of users named after r.tag, the two users
// of pair i dialling urls[i] and urls[i+1] first (modulo len(urls)); runs
// meanwhile (while they bind), waits until every user is bound and lets
// them send. The load stops when t ends.
func (r *faultRun) startLoad(t *testing.T, urls []string, meanwhile func()) {
	t.Helper()
	start := make(chan struct{}) // closed once every user is bound
	for i := range loadPairs {
		a, b := fmt.Sprintf("%s-%da", r.tag, i), fmt.Sprintf("%s-%db", r.tag, i)
		r.sides = append(r.sides, newLoadSide(a, b, urls, i%len(urls), start), newLoadSide(b, a, urls, (i+1)%len(urls), start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range r.sides {
		wg.Go(func() { s.run(ctx) })
	}
	r.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(r.stop)
	meanwhile()
	deadline := time.Now().Add(loadReady)
	for _, s := range r.sides {
		for !s.bound.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not bound within %v of the start", s.uid, loadReady)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(start)
}

// fault marks the moment of the fault: the probe starts asking who is
// online, and the leaver leaves.
func (r *faultRun) fault(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	r.probe.watch(t, at)
	r.leaver.close()
	r.probe.set(r.tag+"-leave", false)
	return at
}

// finish stops the load, drains it, fetches every user's history, checks
// the results, prints the figures and returns them.
func (r *faultRun) finish(t *testing.T, fault string) tally {
	t.Helper()
	for _, s := range r.sides {
		close(s.drain)
	}
	r.waitAll(t, drainWait, "a save for every say", func(s *loadSide) <-chan struct{} { return s.drained })
	time.Sleep(lateTexts)
	for _, s := range r.sides {
		close(s.sweep)
	}
	r.waitAll(t, sweepWait, "the whole history", func(s *loadSide) <-chan struct{} { return s.done })

	var senders []string
	for _, s := range r.sides {
		senders = append(senders, s.uid)
	}
	rows, err := loadRows(context.Background(), r.c.pg, senders)
	if err != nil {
		t.Fatal(err)
	}
	tl := count(r.sides, rows)
	line := tl.figures(fault, r.online, r.extra)
	t.Log(line)
	fmt.Println(line)
	if len(tl.unreadDetail) > 0 {
		t.Logf("messages that waited as unread (their save said is_read 0): %s", examples(tl.unreadDetail))
	}
	tl.report(t)
	if r.outage != nil {
		checkOutage(t, *r.outage, r.sides)
	}
	return tl
}

// waitAll waits until ch(s) is closed for every side. After timeout it
// stops the load and fails t, saying what the late side was waiting for.
func (r *faultRun) waitAll(t *testing.T, timeout time.Duration, what string, ch func(*loadSide) <-chan struct{}) {
	t.Helper()
	deadline := time.After(timeout)
	for _, s := range r.sides {
		select {
		case <-ch(s):
		case <-deadline:
			r.stop() // the side's state is the test's to read now
			t.Fatalf("%s: no %s within %v; %d says pending, bound %v, %d problems: %s",
				s.uid, what, timeout, len(s.pending), s.bound.Load(), len(s.problems), examples(s.problems))
		}
	}
}

// injectGatewayKill kills gateway0 with SIGKILL. Its users reconnect to
// gateway1; a uid bound only on gateway0 must go offline once the lease
// lapses. Then gateway0 starts again.
func injectGatewayKill(t *testing.T, r *faultRun) {
	ghost := r.c.dial(t, 0, r.tag+"-ghost")
	ghost.bind(r.tag + "-ghost")
	r.probe.set(r.tag+"-ghost", true)
	r.c.gateways[0].kill(t)
	r.fault(t)
	r.probe.set(r.tag+"-ghost", false)
	r.online = r.probe.settle(t)
	r.c.respawnGateway(t, 0)
}

// injectWorkerKill kills worker0 with SIGKILL: the events it held are
// lost, and the says among them are sent again. Then it starts again.
func injectWorkerKill(t *testing.T, r *faultRun) {
	r.c.workers[0].kill(t)
	r.fault(t)
	r.online = r.probe.settle(t)
	r.c.respawnWorker(t, 0)
}

// injectRegisterRestart kills the register with SIGKILL and starts it
// again on the same address after registerDown.
func injectRegisterRestart(t *testing.T, r *faultRun) {
	r.c.register.kill(t)
	r.fault(t)
	time.Sleep(registerDown)
	r.c.respawnRegister(t)
	r.online = r.probe.settle(t)
}

// injectRedisFlushRestart flushes Redis (leases and directory gone), waits
// until the online state is correct again, then stops Redis for redisDown
// and starts it again on the same port, empty. online_s is measured from
// the restart (while Redis is down nobody can tell who is online),
// flush_online_s from the flush.
func injectRedisFlushRestart(t *testing.T, r *faultRun) {
	if err := r.c.redisSrv.FlushAll(); err != nil {
		t.Fatal(err)
	}
	r.fault(t)
	flushed := r.probe.settle(t)
	r.extra = append(r.extra, fmt.Sprintf("flush_online_s=%.2f", flushed.Seconds()))
	r.c.redisSrv.Stop()
	time.Sleep(redisDown)
	if err := r.c.redisSrv.Start(); err != nil {
		t.Fatalf("start redis again: %v", err)
	}
	r.probe.watch(t, time.Now())
	r.online = r.probe.settle(t)
}

// injectPostgresRestart stops PostgreSQL (a fast shutdown) for postgresDown
// and starts it again on the same port and data directory.
func injectPostgresRestart(t *testing.T, r *faultRun) {
	r.c.pgSrv.Stop()
	o := &outage{from: r.fault(t)}
	time.Sleep(postgresDown)
	o.until = time.Now()
	r.outage = o
	if err := r.c.pgSrv.Start(); err != nil {
		t.Fatalf("start postgres again: %v", err)
	}
	r.online = r.probe.settle(t)
}
