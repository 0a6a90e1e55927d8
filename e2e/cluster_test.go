package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/testsvc"
)

// Timeouts of process management. They are generous: they bound waits, they
// do not measure speed.
const (
	// startTimeout bounds how long a process may take to log that it
	// listens, and the cluster to link every worker to every gateway.
	startTimeout = 20 * time.Second
	// stopGrace is how long a process may take to exit after SIGTERM
	// before it is killed (and the test fails).
	stopGrace = 10 * time.Second
	// killWait bounds how long a process may take to die after SIGKILL.
	killWait = 10 * time.Second
	// startAttempts is how many sets of free ports a process tries: another
	// process may take a port between testsvc.FreeAddr and the bind.
	startAttempts = 3
	// logTailLines is how many lines of each log a failed test prints.
	logTailLines = 60
	// lease is the register's gateway lease. It is short so that the
	// gateway-failure test finishes fast; gateways renew every lease/5.
	lease = 2 * time.Second
)

// proc is one gatewire process started by a test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once cmd.Wait has returned
	killed  bool          // the test killed the process on purpose
	stopped bool          // stop has run
}

// launch starts bin with args, its stdout and stderr going to logPath, and
// registers a cleanup that stops it by its PID.
func launch(t *testing.T, name, bin, logPath string, args []string) *proc {
	t.Helper()
	p, err := startProc(name, bin, logPath, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// startProc starts bin with args, its stdout and stderr going to logPath.
// The caller must see that it is stopped.
func startProc(name, bin, logPath string, args []string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	path := bin
	if !filepath.IsAbs(bin) {
		path = filepath.Join(binDir, bin) // one of ours
	}
	cmd := exec.Command(path, args...)
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setDeathSignal(cmd)
	err = cmd.Start()
	_ = logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

// childEnv is the test's environment without GATEWIRE_ variables, which
// would change the processes' flags behind the test's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWIRE_") {
			env = append(env, kv)
		}
	}
	return env
}

// hasExited reports whether the process has exited.
func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop ends the process with SIGTERM, or SIGKILL after stopGrace, and waits
// for it. A process that exits uncleanly, needs SIGKILL, died without the
// test killing it, or reported a data race or a panic fails the test; stop
// then returns false. Stopping a process again does nothing.
func (p *proc) stop(t *testing.T) bool {
	if p.stopped {
		return true
	}
	p.stopped = true
	ok := true
	errorf := func(format string, args ...any) {
		t.Errorf(format, args...)
		ok = false
	}
	switch {
	case p.killed:
	case p.hasExited():
		errorf("%s exited before the test ended: %v", p.name, p.cmd.ProcessState)
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it just exited
		select {
		case <-p.exited:
			if !p.cmd.ProcessState.Success() {
				errorf("%s exited with %v after SIGTERM", p.name, p.cmd.ProcessState)
			}
		case <-time.After(stopGrace):
			errorf("%s did not exit within %v of SIGTERM; killing it", p.name, stopGrace)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if bad := p.logProblems(); bad != "" {
		errorf("%s logged %s (see %s)", p.name, bad, p.logPath)
	}
	return ok
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.killed = true
	if err := p.cmd.Process.Kill(); err != nil && !p.hasExited() {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(killWait):
		t.Fatalf("%s still running %v after SIGKILL", p.name, killWait)
	}
}

// logProblems names what in the log shows a bug whatever the test does: a
// data race, a panic or a recovered handler panic.
func (p *proc) logProblems() string {
	log := p.log()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:", `msg="handler panicked"`} {
		if strings.Contains(log, bad) {
			return fmt.Sprintf("%q", bad)
		}
	}
	return ""
}

// log returns the process's output so far.
func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// waitLog polls the log until cond holds for it. It fails when the process
// exits first or timeout passes.
func (p *proc) waitLog(timeout time.Duration, what string, cond func(log string) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond(p.log()) {
			return nil
		}
		if p.hasExited() {
			if cond(p.log()) { // it may have logged and then exited
				return nil
			}
			return fmt.Errorf("%s exited (%v) before %s", p.name, p.cmd.ProcessState, what)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %v", p.name, what, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// cluster is Redis, PostgreSQL, one register, two gateways and two
// workers, each a separate process.
type cluster struct {
	t          *testing.T
	logDir     string
	procs      []*proc // every process started, for the failure report
	generation int     // how often the processes were restarted
	redis      string
	redisSrv   *testsvc.RedisServer
	pg         string // PostgreSQL DSN of the message store
	pgSrv      *testsvc.PostgresServer
	secret     string
	jwtSecret  string // workers sign bind tokens with it; "" means -insecure-bind
	prefix     string
	pushToken  string
	register   *proc
	regAddr    string
	gateways   []*gateway
	workers    []*worker
}

// gateway is a gateway process and its addresses.
type gateway struct {
	*proc
	wsAddr   string // 127.0.0.1:port
	wsURL    string // ws://127.0.0.1:port/
	linkAddr string
}

// worker is a worker process and its addresses.
type worker struct {
	*proc
	pushAddr string
	httpAddr string // the Push API as HTTP/JSON
	pageAddr string // 127.0.0.1:port
	pageURL  string // http://127.0.0.1:port/ — the chat page, connecting to gateway i
}

// startCluster starts Redis, PostgreSQL and the cluster's processes, and
// waits until every worker is linked to every gateway and each gateway
// greets a client. Everything stops when t ends; when t has failed, the
// tail of every process's log is printed.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, "")
}

// startClusterWith starts a cluster as startCluster does, with workers
// that verify bind tokens signed with jwtSecret ("": -insecure-bind). With
// a secret they also serve the customer-service desk, for sites on
// 127.0.0.1.
func startClusterWith(t *testing.T, jwtSecret string) *cluster {
	t.Helper()
	return startClusterOn(t, jwtSecret, nil)
}

// startClusterOn starts a cluster as startClusterWith does, on the Redis
// Cluster of the nodes redisNodes; none means a Redis server of its own,
// which c.redisSrv stops and starts.
func startClusterOn(t *testing.T, jwtSecret string, redisNodes []string) *cluster {
	t.Helper()
	c := &cluster{
		jwtSecret: jwtSecret,
		t:         t,
		logDir:    t.TempDir(), // first, so that it is removed after the logs are printed
		secret:    randomHex(16),
		prefix:    "e2e-" + randomHex(4) + ":",
		pushToken: randomHex(16),
	}
	t.Cleanup(c.report) // registered before any process: runs after they are stopped
	if len(redisNodes) == 0 {
		c.redisSrv = testsvc.StartRedis(t)
		c.redis = c.redisSrv.Addr()
	} else {
		c.redis = strings.Join(redisNodes, ",")
	}
	c.pgSrv = testsvc.StartPostgres(t)
	c.pg = c.pgSrv.DSN()
	t.Logf("redis %s, key prefix %q, postgres %s, logs in %s", c.redis, c.prefix, c.pg, c.logDir)
	c.launch()
	return c
}

// restart stops every process of the cluster with SIGTERM, in the reverse
// order of their start (each must exit cleanly), then starts them all again
// with the same flags, on the same Redis, key prefix and PostgreSQL database
// and, unless one was taken meanwhile, on the same ports. It waits as
// startCluster does. Clients of the old processes are disconnected.
func (c *cluster) restart() {
	c.t.Helper()
	start := time.Now()
	c.stopAll()
	stopped := time.Now()
	c.generation++
	c.launch()
	c.t.Logf("cluster restarted (generation %d): stopped in %v, started in %v", c.generation,
		stopped.Sub(start).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
}

// stopAll stops the workers, then the gateways, then the register, each
// with SIGTERM and by its PID; an unclean exit ends the test.
func (c *cluster) stopAll() {
	c.t.Helper()
	var workers, gateways []*proc
	for _, w := range c.workers {
		workers = append(workers, w.proc)
	}
	for _, g := range c.gateways {
		gateways = append(gateways, g.proc)
	}
	// A race-enabled binary sleeps a second before it exits: the processes
	// of one kind stop at once.
	ok := stopProcs(c.t, workers...)
	ok = stopProcs(c.t, gateways...) && ok
	ok = stopProcs(c.t, c.register) && ok
	if !ok {
		c.t.FailNow()
	}
}

// stopProcs stops the processes concurrently and reports whether each one
// stopped cleanly.
func stopProcs(t *testing.T, procs ...*proc) bool {
	ok := make([]bool, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { ok[i] = p.stop(t) })
	}
	wg.Wait()
	return !slices.Contains(ok, false)
}

// launch starts the register, the gateways and the workers, reusing the
// addresses of the previous generation on the first attempt, and waits
// until every worker is linked to every gateway and each gateway greets a
// client.
func (c *cluster) launch() {
	t := c.t
	t.Helper()
	// addr reuses prev on a first attempt, or finds a free port.
	addr := func(prev string, attempt int) string {
		if prev != "" && attempt == 1 {
			return prev
		}
		return testsvc.FreeAddr(t)
	}
	common := []string{"-secret", c.secret, "-redis", c.redis, "-redis-prefix", c.prefix, "-log-level", "debug", "-metrics-addr", "127.0.0.1:0"}
	c.register = c.start("register", "register", `msg="register listening"`, func(attempt int) []string {
		c.regAddr = addr(c.regAddr, attempt)
		return append([]string{"-addr", c.regAddr, "-lease", lease.String()}, common...)
	})
	prevG, prevW := c.gateways, c.workers
	c.gateways, c.workers = nil, nil
	for i := range 2 {
		g := &gateway{}
		if i < len(prevG) {
			g.wsAddr, g.linkAddr = prevG[i].wsAddr, prevG[i].linkAddr
		}
		g.proc = c.start(fmt.Sprintf("gateway%d", i), "gateway", `msg="gateway listening"`, func(attempt int) []string {
			g.wsAddr = addr(g.wsAddr, attempt)
			g.wsURL = "ws://" + g.wsAddr + "/"
			g.linkAddr = addr(g.linkAddr, attempt)
			return append([]string{
				"-ws-addr", g.wsAddr, "-link-addr", g.linkAddr, "-register", c.regAddr,
				// Pings every second: the test's clients must answer them
				// throughout (they read all the time).
				"-ping-interval", "1s", "-ping-misses", "3",
				// The workers' chat pages are on other loopback ports.
				"-origins", "127.0.0.1:*",
			}, common...)
		})
		c.gateways = append(c.gateways, g)
	}
	for i := range 2 {
		w := &worker{}
		if i < len(prevW) {
			w.pushAddr, w.pageAddr, w.httpAddr = prevW[i].pushAddr, prevW[i].pageAddr, prevW[i].httpAddr
		}
		w.proc = c.start(fmt.Sprintf("worker%d", i), "worker", `msg="push api listening"`, func(attempt int) []string {
			w.pushAddr = addr(w.pushAddr, attempt)
			w.httpAddr = addr(w.httpAddr, attempt)
			w.pageAddr = addr(w.pageAddr, attempt)
			w.pageURL = "http://" + w.pageAddr + "/"
			bind := []string{"-insecure-bind"}
			if c.jwtSecret != "" {
				bind = []string{"-jwt-secret", c.jwtSecret, "-desk-origins", "127.0.0.1:*"}
			}
			return append(append([]string{
				"-register", c.regAddr,
				"-push-addr", w.pushAddr, "-push-token", c.pushToken,
				"-push-http-addr", w.httpAddr,
				"-store", c.pg, "-demo-users",
				"-http-addr", w.pageAddr, "-ws-url", c.gateways[i].wsURL,
			}, bind...), common...)
		})
		c.workers = append(c.workers, w)
	}

	for _, g := range c.gateways {
		err := g.waitLog(startTimeout, "links from both workers", func(log string) bool {
			return len(linkedWorkers(log)) == len(c.workers)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.gateways {
		probe := c.dial(t, i, fmt.Sprintf("probe%d", i))
		probe.closeNow()
	}
}

// start launches a process, retrying with fresh ports (args picks them for
// each attempt, counted from 1) when one was taken, and waits until its log
// contains ready.
func (c *cluster) start(name, bin, ready string, args func(attempt int) []string) *proc {
	c.t.Helper()
	if c.generation > 0 {
		name = fmt.Sprintf("%s.r%d", name, c.generation)
	}
	for attempt := 1; ; attempt++ {
		logPath := filepath.Join(c.logDir, name+".log")
		if attempt > 1 {
			logPath = filepath.Join(c.logDir, fmt.Sprintf("%s.%d.log", name, attempt))
		}
		p := launch(c.t, name, bin, logPath, args(attempt))
		c.procs = append(c.procs, p)
		err := p.waitLog(startTimeout, "ready line "+ready, func(log string) bool {
			return strings.Contains(log, ready)
		})
		if err == nil {
			return p
		}
		if p.hasExited() && strings.Contains(p.log(), "address already in use") && attempt < startAttempts {
			p.killed = true // its failure is handled here
			c.t.Logf("%s: a port was taken; retrying with others", name)
			continue
		}
		c.t.Fatal(err)
	}
}

// report prints the tail of every process's log when the test failed.
func (c *cluster) report() {
	if !c.t.Failed() {
		return
	}
	for _, p := range c.procs {
		c.t.Logf("---- %s (%s), %v, last lines:\n%s", p.name, p.logPath, p.cmd.ProcessState, p.tail(logTailLines))
	}
}

// dial connects a client to gateway i and reads its init frame.
func (c *cluster) dial(t *testing.T, i int, name string) *client {
	t.Helper()
	return dial(t, c.gateways[i].wsURL, name)
}

// workerIDRE finds the worker_id attribute of a gateway's link log line.
var workerIDRE = regexp.MustCompile(`worker_id=(\S+)`)

// linkedWorkers returns the ids of the workers a gateway's log shows linked
// and not unlinked since.
func linkedWorkers(log string) map[string]bool {
	linked := make(map[string]bool)
	for _, line := range strings.Split(log, "\n") {
		m := workerIDRE.FindStringSubmatch(line)
		switch {
		case m == nil:
		case strings.Contains(line, `msg="worker linked"`):
			linked[m[1]] = true
		case strings.Contains(line, `msg="worker unlinked"`):
			delete(linked, m[1])
		}
	}
	return linked
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// retryUntil calls f until it returns nil or timeout passes, and returns
// f's last error.
func retryUntil(ctx context.Context, timeout, every time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(every):
		}
	}
}
