package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// childScenario is the hidden scenario of the helper processes the idle
// scenario starts when one process cannot hold every connection.
const childScenario = "idle-child"

// idleConfig holds the idle scenario's flags.
type idleConfig struct {
	n         int
	perProc   int
	settle    time.Duration
	hold      time.Duration
	indexBase int // idle-child: index of its first connection in the run
}

func idleFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c idleConfig
	fs.IntVar(&c.n, "n", 1000, "bound connections to open, spread over the -ws gateways")
	fs.IntVar(&c.perProc, "conns-per-proc", 19000, "most connections one process holds; more start helper chatbench processes (each process may have at most its open-file limit of descriptors)")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after the last bind before the RSS is read")
	fs.DurationVar(&c.hold, "hold", 0, "keep the connections open this much longer after the measurement")
	return func(o *common) (any, error) { return runIdle(o, c) }
}

func idleChildFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c idleConfig
	fs.IntVar(&c.n, "n", 0, "connections of this helper")
	fs.IntVar(&c.indexBase, "index-base", 0, "index of the helper's first connection")
	return func(o *common) (any, error) { return nil, runIdleChild(o, c) }
}

// idleResult is the idle scenario's output line.
type idleResult struct {
	header
	Conns    int     `json:"conns"`
	Procs    int     `json:"client_procs"`
	BindS    float64 `json:"bind_s"`
	BindPerS float64 `json:"binds_per_s"`
	SettleS  float64 `json:"settle_s"`
	// RSS of each -pids process before the first connection and after
	// the last bind (+ settle), in kB.
	RSSBeforeKB map[string]int64 `json:"rss_before_kb"`
	RSSAfterKB  map[string]int64 `json:"rss_after_kb"`
	RSSDeltaKB  int64            `json:"rss_delta_kb"`
	// RSSPerConn is RSSDeltaKB over all -pids, in bytes per connection.
	RSSPerConn  float64 `json:"rss_per_conn_bytes"`
	ClientRSSKB int64   `json:"client_rss_kb"`
	// CPU is spent while opening and binding, per bound connection.
	CPU *cpuReport `json:"cpu,omitempty"`
	// GC is each -metrics process's GC pauses while opening and binding.
	GC map[string]gcSummary `json:"gc_pauses,omitempty"`
}

func runIdle(o *common, cfg idleConfig) (any, error) {
	if cfg.n < 1 {
		return nil, errors.New("-n must be at least 1")
	}
	perProc := cfg.perProc
	if limit := int(min(o.fdLimit, 1<<30)) - 200; perProc > limit {
		perProc = limit
	}
	if perProc < 1 {
		return nil, fmt.Errorf("the open-file limit %d leaves no room for connections", o.fdLimit)
	}
	rssBefore, err := rssAll(o.pids)
	if err != nil {
		return nil, err
	}
	win := newCPUWindow(o.pids, self(), o.metrics)
	if err := win.start(); err != nil {
		return nil, fmt.Errorf("CPU sample: %w", err)
	}
	start := time.Now()

	// This process holds the first share, helpers the others.
	own := min(cfg.n, perProc)
	var helpers []*helper
	defer func() {
		for _, h := range helpers {
			h.stop()
		}
	}()
	for base := own; base < cfg.n; base += perProc {
		h, err := startIdleHelper(o, base, min(perProc, cfg.n-base))
		if err != nil {
			return nil, err
		}
		helpers = append(helpers, h)
	}
	if !o.quiet {
		logf("idle: opening %d connections over %d gateway(s) from %d process(es)", cfg.n, len(o.urls), 1+len(helpers))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
	defer cancel()
	fl, err := openAll(ctx, o.dialer, idlePlan(o, 0, own), o.dialConc, o.quiet)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	for _, h := range helpers {
		if _, err := h.expect(ctx, "ready"); err != nil {
			return nil, err
		}
	}
	bind := time.Since(start)
	if err := win.stop(bind.Seconds()); err != nil {
		return nil, fmt.Errorf("CPU sample: %w", err)
	}
	if !o.quiet {
		logf("idle: %d connections bound in %v; settling %v", cfg.n, bind.Round(time.Millisecond), cfg.settle)
	}
	time.Sleep(cfg.settle)
	rssAfter, err := rssAll(o.pids)
	if err != nil {
		return nil, err
	}
	client, err := rssKB(os.Getpid())
	if err != nil {
		return nil, err
	}
	for _, h := range helpers {
		kb, err := rssKB(h.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("helper RSS: %w", err)
		}
		client += kb
	}
	res := &idleResult{
		header:      o.header(),
		Conns:       cfg.n,
		Procs:       1 + len(helpers),
		BindS:       round3(bind.Seconds()),
		BindPerS:    round3(float64(cfg.n) / bind.Seconds()),
		SettleS:     cfg.settle.Seconds(),
		RSSBeforeKB: rssBefore,
		RSSAfterKB:  rssAfter,
		ClientRSSKB: client,
		CPU:         win.report("bound connection", int64(cfg.n)),
	}
	for _, p := range o.pids {
		res.RSSDeltaKB += rssAfter[p.name] - rssBefore[p.name]
	}
	res.RSSPerConn = round3(float64(res.RSSDeltaKB) * 1024 / float64(cfg.n))
	if res.GC, err = win.gc.report(); err != nil {
		return nil, err
	}
	if cfg.hold > 0 {
		time.Sleep(cfg.hold)
	}
	return res, nil
}

// idlePlan places connections base..base+n-1 of the run: in turn on each
// gateway and from each source address.
func idlePlan(o *common, base, n int) plan {
	return plan{
		n:       n,
		srcBase: base,
		url:     func(i int) string { return o.urls[(base+i)%len(o.urls)] },
		uid:     func(i int) string { return o.uidPrefix + "i" + strconv.Itoa(base+i) },
		handler: func(int, *conn) func([]byte) { return func([]byte) {} },
	}
}

func rssAll(pids []namedPID) (map[string]int64, error) {
	m := make(map[string]int64, len(pids))
	for _, p := range pids {
		kb, err := rssKB(p.pid)
		if err != nil {
			return nil, fmt.Errorf("RSS of %s (pid %d): %w", p.name, p.pid, err)
		}
		m[p.name] = kb
	}
	return m, nil
}

// startIdleHelper starts an idle-child process that opens and binds
// connections base to base+n-1, says "ready" and holds them until its
// stdin closes.
func startIdleHelper(o *common, base, n int) (*helper, error) {
	// The secret goes by the environment, not the command line.
	env := append(os.Environ(), "CHATBENCH_JWT_SECRET="+o.jwtSecret)
	return startHelper(env, childScenario,
		"-n", strconv.Itoa(n), "-index-base", strconv.Itoa(base),
		"-ws", strings.Join(o.urls, ","), "-src", o.src,
		"-uid-prefix", o.uidPrefix, "-token-ttl", o.tokenTTL.String(),
		"-dial-concurrency", strconv.Itoa(o.dialConc), "-setup-timeout", o.setupTimeout.String(),
		"-quiet="+strconv.FormatBool(o.quiet))
}

// runIdleChild opens and binds its share, says "ready" on stdout, and
// holds the connections until stdin reaches EOF.
func runIdleChild(o *common, cfg idleConfig) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
	defer cancel()
	fl, err := openAll(ctx, o.dialer, idlePlan(o, cfg.indexBase, cfg.n), o.dialConc, true)
	if err != nil {
		return err
	}
	defer fl.close()
	if _, err := fmt.Println("ready", cfg.n); err != nil {
		return err
	}
	return untilStdinCloses(nil)
}
