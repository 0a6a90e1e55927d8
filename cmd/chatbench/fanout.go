package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fanoutConfig holds the fanout scenario's flags.
type fanoutConfig struct {
	members      int
	op           string
	rounds       int
	warmupRounds int
	roundTimeout time.Duration
	pushHTTP     string
	pushToken    string
	group        string
	joinConc     int
	size         int
}

func fanoutFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c fanoutConfig
	fs.IntVar(&c.members, "members", 100, "connections that join the group, spread over the -ws gateways")
	fs.StringVar(&c.op, "op", "group", `"group": SendToGroup to the members' group; "all": SendToAll (every connection of the cluster gets it; only the members are counted)`)
	fs.IntVar(&c.rounds, "rounds", 20, "measured calls; each waits until every member has the frame (or -round-timeout)")
	fs.IntVar(&c.warmupRounds, "warmup-rounds", 2, "calls before the measured ones, not counted")
	fs.DurationVar(&c.roundTimeout, "round-timeout", 10*time.Second, "how long a call's frame may take to reach every member")
	fs.StringVar(&c.pushHTTP, "push-http", "http://127.0.0.1:2180", "workers' Push API HTTP/JSON base URLs, comma-separated; calls go to them in turn")
	fs.StringVar(&c.pushToken, "push-token", "", "the workers' -push-token (default $CHATBENCH_PUSH_TOKEN)")
	fs.StringVar(&c.group, "group", "", "group the members join (default <uid-prefix>group)")
	fs.IntVar(&c.joinConc, "join-concurrency", 16, "JoinGroup calls at once")
	fs.IntVar(&c.size, "size", 0, "extra bytes in each pushed frame")
	return func(o *common) (any, error) { return runFanout(o, c) }
}

// fanoutResult is the fanout scenario's output line.
type fanoutResult struct {
	header
	Op        string  `json:"op"`
	Members   int     `json:"members"`
	Rounds    int     `json:"rounds"`
	Bytes     int     `json:"frame_bytes"`
	SetupS    float64 `json:"setup_s"`
	JoinS     float64 `json:"join_s"`
	JoinPerS  float64 `json:"joins_per_s"`
	Complete  int     `json:"complete_rounds"`
	Delivered int64   `json:"delivered"`
	Missing   int64   `json:"missing"`
	Dups      int64   `json:"duplicates"`
	// APIDelivered sums the "delivered" counts the calls returned.
	APIDelivered   int64   `json:"api_delivered"`
	Errors         int64   `json:"errors"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	// Latency is per call, from the call to the last member's delivery;
	// MemberLatency per delivery; CallLatency the HTTP call itself.
	Latency       latSummary `json:"latency"`
	MemberLatency latSummary `json:"member_latency"`
	CallLatency   latSummary `json:"call_latency"`
	CPU           *cpuReport `json:"cpu,omitempty"`
	// GC is each -metrics process's GC pauses over the measured calls.
	GC map[string]gcSummary `json:"gc_pauses,omitempty"`
}

// fanRound is one call's progress; start is set before the call.
type fanRound struct {
	start     atomic.Int64
	remaining atomic.Int64
	last      atomic.Int64
	done      chan struct{}
}

// fanPrefix starts every frame the scenario pushes; the round number follows.
var fanPrefix = []byte(`{"type":"chatbench","round":`)

// member is one member connection's reader state.
type member struct {
	lastRound int64 // the last round seen; -1 before any
	lat       []int64
	dups      int64
}

func runFanout(o *common, cfg fanoutConfig) (any, error) {
	if cfg.pushToken == "" {
		cfg.pushToken = os.Getenv("CHATBENCH_PUSH_TOKEN")
	}
	switch {
	case cfg.members < 1 || cfg.rounds < 1 || cfg.warmupRounds < 0:
		return nil, errors.New("-members and -rounds must be at least 1, -warmup-rounds not negative")
	case cfg.op != "group" && cfg.op != "all":
		return nil, fmt.Errorf(`-op: want "group" or "all", got %q`, cfg.op)
	case cfg.pushToken == "":
		return nil, errors.New("-push-token (or $CHATBENCH_PUSH_TOKEN) is required")
	case uint64(cfg.members)+64 > o.fdLimit:
		return nil, fmt.Errorf("%d connections need more open files than the limit %d", cfg.members, o.fdLimit)
	}
	if cfg.group == "" {
		cfg.group = o.uidPrefix + "group"
	}
	pc, err := newPushClient(cfg.pushHTTP, cfg.pushToken, cfg.joinConc)
	if err != nil {
		return nil, err
	}
	total := cfg.warmupRounds + cfg.rounds
	rounds := make([]fanRound, total)
	for i := range rounds {
		rounds[i].remaining.Store(int64(cfg.members))
		rounds[i].done = make(chan struct{})
	}
	members := make([]*member, cfg.members)
	g := len(o.urls)
	p := plan{
		n:   cfg.members,
		url: func(i int) string { return o.urls[i%g] },
		uid: func(i int) string { return o.uidPrefix + "m" + strconv.Itoa(i) },
		handler: func(i int, c *conn) func([]byte) {
			m := &member{lastRound: -1}
			members[i] = m
			return func(f []byte) {
				rest, ok := bytes.CutPrefix(f, fanPrefix)
				if !ok {
					return
				}
				n, ok := leadingInt(rest)
				if !ok || n >= int64(total) {
					return
				}
				t := now()
				if n <= m.lastRound {
					m.dups++
					return
				}
				m.lastRound = n
				rd := &rounds[n]
				if n >= int64(cfg.warmupRounds) {
					m.lat = append(m.lat, t-rd.start.Load())
				}
				if rd.remaining.Add(-1) == 0 {
					rd.last.Store(t)
					close(rd.done)
				}
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
	defer cancel()
	if !o.quiet {
		logf("fanout: opening %d connections over %d gateway(s)", cfg.members, g)
	}
	setupStart := time.Now()
	fl, err := openAll(ctx, o.dialer, p, o.dialConc, o.quiet)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	setup := time.Since(setupStart)

	// Join the group through the Push API.
	joinStart := time.Now()
	if err := joinAll(ctx, pc, fl.conns, cfg.group, cfg.joinConc); err != nil {
		return nil, err
	}
	join := time.Since(joinStart)
	if !o.quiet {
		logf("fanout: %d members joined %q in %v; %d+%d %s rounds", cfg.members, cfg.group, join.Round(time.Millisecond), cfg.warmupRounds, cfg.rounds, cfg.op)
	}

	method := "SendToGroup"
	if cfg.op == "all" {
		method = "SendToAll"
	}
	var (
		body      []byte
		frame     []byte
		roundLat  []int64
		callLat   []int64
		busy      int64 // nanoseconds from the measured calls to their last delivery
		complete  int
		missing   int64
		apiDeliv  int64
		errs      int64
		delivered int64
	)
	win := newCPUWindow(o.pids, self(), o.metrics)
	for n := range total {
		if n == cfg.warmupRounds {
			if err := win.start(); err != nil {
				return nil, fmt.Errorf("CPU sample: %w", err)
			}
		}
		measured := n >= cfg.warmupRounds
		frame = append(frame[:0], fanPrefix...)
		frame = strconv.AppendInt(frame, int64(n), 10)
		if cfg.size > 0 {
			frame = append(frame, `,"pad":"`...)
			frame = append(frame, strings.Repeat("x", cfg.size)...)
			frame = append(frame, '"')
		}
		frame = append(frame, '}')
		body = append(body[:0], `{"data":"`...)
		body = base64.StdEncoding.AppendEncode(body, frame)
		body = append(body, '"')
		if cfg.op == "group" {
			body = append(body, `,"groups":[`...)
			body = strconv.AppendQuote(body, cfg.group)
			body = append(body, ']')
		}
		body = append(body, '}')

		rd := &rounds[n]
		start := now()
		rd.start.Store(start)
		var resp struct {
			Delivered int64 `json:"delivered"`
		}
		err := pc.call(ctx, method, body, &resp)
		callEnd := now()
		if err != nil {
			errs++
			logf("%s round %d: %v", method, n, err)
		}
		timer := time.NewTimer(cfg.roundTimeout)
		select {
		case <-rd.done:
		case <-timer.C:
		}
		timer.Stop()
		if !measured {
			continue
		}
		callLat = append(callLat, callEnd-start)
		apiDeliv += resp.Delivered
		left := rd.remaining.Load()
		delivered += int64(cfg.members) - max(0, left)
		if left <= 0 {
			complete++
			roundLat = append(roundLat, rd.last.Load()-start)
			busy += rd.last.Load() - start
		} else {
			missing += left
			busy += now() - start
		}
	}
	if err := win.stop(float64(busy) / 1e9); err != nil {
		return nil, fmt.Errorf("CPU sample: %w", err)
	}
	fl.close() // the readers are done: their samples may be read

	var lat [][]int64
	var dups int64
	for _, m := range members {
		lat = append(lat, m.lat)
		dups += m.dups
	}
	res := &fanoutResult{
		header:        o.header(),
		Op:            cfg.op,
		Members:       cfg.members,
		Rounds:        cfg.rounds,
		Bytes:         len(frame),
		SetupS:        round3(setup.Seconds()),
		JoinS:         round3(join.Seconds()),
		JoinPerS:      round3(float64(cfg.members) / join.Seconds()),
		Complete:      complete,
		Delivered:     delivered,
		Missing:       missing,
		Dups:          dups,
		APIDelivered:  apiDeliv,
		Errors:        errs,
		Latency:       summarize(roundLat),
		MemberLatency: summarize(concat(lat)),
		CallLatency:   summarize(callLat),
		CPU:           win.report("delivery", delivered),
	}
	if res.GC, err = win.gc.report(); err != nil {
		return nil, err
	}
	if busy > 0 {
		res.DeliveriesPerS = round3(float64(delivered) / (float64(busy) / 1e9))
	}
	return res, nil
}

// joinAll puts every connection in group, conc calls at a time.
func joinAll(ctx context.Context, pc *pushClient, conns []*conn, group string, conc int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(conc, len(conns))) {
		wg.Go(func() {
			var body []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) || ctx.Err() != nil {
					return
				}
				body = append(body[:0], `{"client_id":`...)
				body = strconv.AppendQuote(body, conns[i].id)
				body = append(body, `,"group":`...)
				body = strconv.AppendQuote(body, group)
				body = append(body, '}')
				if err := pc.call(ctx, "JoinGroup", body, nil); err != nil {
					cancel(fmt.Errorf("JoinGroup(%s): %w", conns[i].id, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// pushClient calls the workers' Push API over HTTP/JSON.
type pushClient struct {
	hc    *http.Client
	bases []string
	auth  string
	next  atomic.Uint64
}

func newPushClient(list, token string, conc int) (*pushClient, error) {
	pc := &pushClient{
		hc: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: max(conc, 4)},
		},
		auth: "Bearer " + token,
	}
	for _, b := range strings.Split(list, ",") {
		b = strings.TrimRight(strings.TrimSpace(b), "/")
		if b == "" {
			continue
		}
		if !strings.HasPrefix(b, "http://") && !strings.HasPrefix(b, "https://") {
			return nil, fmt.Errorf("-push-http %q: want http://host:port", b)
		}
		pc.bases = append(pc.bases, b+"/v1/")
	}
	if len(pc.bases) == 0 {
		return nil, errors.New("-push-http: no URL")
	}
	return pc, nil
}

// call posts body to method on the next worker and decodes the answer
// into out (nil: discard it).
func (pc *pushClient) call(ctx context.Context, method string, body []byte, out any) error {
	base := pc.bases[(pc.next.Add(1)-1)%uint64(len(pc.bases))]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", pc.auth)
	resp, err := pc.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %.300s", req.URL, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s: decode %.300s: %w", req.URL, b, err)
		}
	}
	return nil
}
