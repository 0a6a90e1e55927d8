package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// chatConfig holds the chat scenario's flags.
type chatConfig struct {
	mode     string
	pairs    int
	rate     float64
	duration time.Duration
	warmup   time.Duration
	drain    time.Duration
	size     int
}

func chatFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c chatConfig
	fs.StringVar(&c.mode, "mode", "closed", `"closed": each pair sends its next say when the previous one's text arrived (max throughput); "open": says at a fixed total -rate on a schedule`)
	fs.IntVar(&c.pairs, "pairs", 50, "pairs of users chatting; the two users of a pair are on different gateways when -ws names several")
	fs.Float64Var(&c.rate, "rate", 1000, "open loop: says per second over all pairs")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "sending before the measured window, not counted")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "how long to wait after the window for the texts and saves still on their way")
	fs.IntVar(&c.size, "size", 0, "extra bytes of text in each say (beyond the ~20-byte timestamp)")
	return func(o *common) (any, error) { return runChat(o, c) }
}

// chatResult is the chat scenario's output line.
type chatResult struct {
	header
	Mode      string  `json:"mode"`
	Pairs     int     `json:"pairs"`
	Conns     int     `json:"conns"`
	Rate      float64 `json:"rate_target,omitempty"`
	TextBytes int     `json:"text_bytes"`
	WarmupS   float64 `json:"warmup_s"`
	DurationS float64 `json:"duration_s"`
	SetupS    float64 `json:"setup_s"`
	// Counts of the says sent in the measured window.
	Sent      int64 `json:"sent"`
	Saved     int64 `json:"saved"`
	Delivered int64 `json:"delivered"`
	Lost      int64 `json:"lost"`
	// Errors counts error frames and failed writes of the whole run, by
	// code in ErrorCodes.
	Errors     int64            `json:"errors"`
	ErrorCodes map[string]int64 `json:"error_codes,omitempty"`
	// WindowTexts counts the texts that arrived during the window, whenever
	// sent; SayPerS is WindowTexts per second.
	WindowTexts int64   `json:"window_texts"`
	SayPerS     float64 `json:"say_per_s"`
	// Latency is from the scheduled send time (open loop) or the send
	// (closed loop) to the peer's text; AckLatency to the sender's save.
	Latency    latSummary  `json:"latency"`
	AckLatency latSummary  `json:"ack_latency"`
	SendLag    *latSummary `json:"send_lag,omitempty"`
	CPU        *cpuReport  `json:"cpu,omitempty"`
	// GC is each -metrics process's GC pauses in the window.
	GC        map[string]gcSummary `json:"gc_pauses,omitempty"`
	AllocsPer float64              `json:"client_allocs_per_msg"`
}

// chatRun is the shared state of one chat run.
type chatRun struct {
	cfg     chatConfig
	closed  bool
	winFrom int64 // measured window [winFrom, winTo), in clock nanoseconds
	winTo   int64
	pad     []byte

	started   atomic.Bool
	sent      atomic.Int64
	saved     atomic.Int64
	delivered atomic.Int64
	winTexts  atomic.Int64
	errs      errorCounter
}

// side is one user of a pair.
type side struct {
	run  *chatRun
	c    *conn
	peer *side
	// sayPrefix is the say frame up to the text:
	// {"type":"say","frontId":"<uid>","toId":"<peer>","data":"
	sayPrefix []byte

	mu  sync.Mutex // the writer of this side: out and seq
	out []byte
	seq int64

	// Owned by this side's reader: latency samples of the window.
	lat []int64 // texts this side received
	ack []int64 // saves this side received
}

// say sends one say whose text carries sched, the time it counts from.
// It reports whether the write succeeded.
func (s *side) say(sched int64) bool {
	r := s.run
	s.mu.Lock()
	s.seq++
	b := append(s.out[:0], s.sayPrefix...)
	b = strconv.AppendInt(b, sched, 10)
	b = append(b, r.pad...)
	b = append(b, `","cmid":"c`...)
	b = strconv.AppendInt(b, s.seq, 10)
	b = append(b, `"}`...)
	s.out = b
	err := s.c.ws.Write(bg, websocket.MessageText, b)
	s.mu.Unlock()
	if err != nil {
		r.errs.add("write_failed", err.Error())
		return false
	}
	if sched >= r.winFrom && sched < r.winTo {
		r.sent.Add(1)
	}
	return true
}

// handle processes one frame this side received.
func (s *side) handle(f []byte) {
	r := s.run
	if !r.started.Load() {
		return
	}
	t := now()
	switch string(strField(f, patType)) {
	case "text":
		sched, ok := leadingInt(strField(f, patRaw))
		if !ok {
			return // not one of ours
		}
		if t >= r.winFrom && t < r.winTo {
			r.winTexts.Add(1)
		}
		if sched >= r.winFrom && sched < r.winTo {
			r.delivered.Add(1)
			s.lat = append(s.lat, t-sched)
		}
		if r.closed && t < r.winTo {
			s.say(now())
		}
	case "save":
		sched, ok := leadingInt(strField(f, patRaw))
		if ok && sched >= r.winFrom && sched < r.winTo {
			r.saved.Add(1)
			s.ack = append(s.ack, t-sched)
		}
	case "error":
		r.errs.add(string(strField(f, patCode)), string(f))
		// A refused say would stop a closed-loop pair: send the next one.
		if r.closed && t < r.winTo {
			s.say(now())
		}
	}
}

func runChat(o *common, cfg chatConfig) (any, error) {
	switch {
	case cfg.mode != "closed" && cfg.mode != "open":
		return nil, fmt.Errorf(`-mode: want "closed" or "open", got %q`, cfg.mode)
	case cfg.pairs < 1:
		return nil, errors.New("-pairs must be at least 1")
	case cfg.mode == "open" && cfg.rate <= 0:
		return nil, errors.New("-rate must be positive")
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.size < 0:
		return nil, errors.New("-duration must be positive, -warmup and -size not negative")
	case uint64(2*cfg.pairs)+64 > o.fdLimit:
		return nil, fmt.Errorf("%d connections need more open files than the limit %d", 2*cfg.pairs, o.fdLimit)
	}
	r := &chatRun{cfg: cfg, closed: cfg.mode == "closed"}
	if cfg.size > 0 {
		r.pad = []byte(" " + strings.Repeat("x", cfg.size-1))
	}
	// Until the schedule starts, the window is empty.
	r.winFrom, r.winTo = 1<<62, 1<<62

	nconn := 2 * cfg.pairs
	sides := make([]*side, nconn)
	uid := func(i int) string {
		ab := "a"
		if i%2 == 1 {
			ab = "b"
		}
		return o.uidPrefix + ab + strconv.Itoa(i/2)
	}
	for i := range sides {
		sides[i] = &side{run: r, out: make([]byte, 0, 256+cfg.size)}
	}
	for i := 0; i < nconn; i += 2 {
		sides[i].peer, sides[i+1].peer = sides[i+1], sides[i]
	}
	g := len(o.urls)
	p := plan{
		n: nconn,
		// Pair k's "a" is on gateway k mod G, its "b" on the next one.
		url: func(i int) string { return o.urls[(i/2+i%2)%g] },
		uid: uid,
		handler: func(i int, c *conn) func([]byte) {
			s := sides[i]
			s.c = c
			return s.handle
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
	defer cancel()
	setupStart := time.Now()
	if !o.quiet {
		logf("chat %s: opening %d connections (%d pairs) over %d gateway(s)", cfg.mode, nconn, cfg.pairs, g)
	}
	fl, err := openAll(ctx, o.dialer, p, o.dialConc, o.quiet)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	setup := time.Since(setupStart)
	for i, s := range sides {
		s.sayPrefix = fmt.Appendf(nil, `{"type":"say","frontId":%q,"toId":%q,"data":"`, uid(i), uid(i^1))
	}

	win := newCPUWindow(o.pids, self(), o.metrics)
	t0 := now()
	r.winFrom = t0 + int64(cfg.warmup)
	r.winTo = r.winFrom + int64(cfg.duration)
	r.started.Store(true)
	if !o.quiet {
		logf("chat %s: %v warm-up, %v measured", cfg.mode, cfg.warmup, cfg.duration)
	}
	var senders sync.WaitGroup
	lags := make([][]int64, cfg.pairs)
	if r.closed {
		for k := range cfg.pairs {
			sides[2*k].say(now())
		}
	} else {
		for k := range cfg.pairs {
			senders.Go(func() { lags[k] = r.openLoop(sides[2*k], sides[2*k+1], k, t0) })
		}
	}

	sleepUntil(r.winFrom)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := win.start(); err != nil {
		return nil, fmt.Errorf("CPU sample: %w", err)
	}
	sleepUntil(r.winTo)
	if err := win.stop(float64(now()-r.winFrom) / 1e9); err != nil {
		return nil, fmt.Errorf("CPU sample: %w", err)
	}
	runtime.ReadMemStats(&ms1)
	senders.Wait()

	// Drain: the says of the window still on their way.
	drainEnd := time.Now().Add(cfg.drain)
	for time.Now().Before(drainEnd) {
		s := r.sent.Load()
		if r.delivered.Load() >= s && r.saved.Load() >= s {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fl.close() // the readers are done: their samples may be read

	var lat, ack [][]int64
	for _, s := range sides {
		lat = append(lat, s.lat)
		ack = append(ack, s.ack)
	}
	res := &chatResult{
		header:      o.header(),
		Mode:        cfg.mode,
		Pairs:       cfg.pairs,
		Conns:       nconn,
		TextBytes:   len(strconv.FormatInt(r.winTo, 10)) + len(r.pad),
		WarmupS:     cfg.warmup.Seconds(),
		DurationS:   cfg.duration.Seconds(),
		SetupS:      round3(setup.Seconds()),
		Sent:        r.sent.Load(),
		Saved:       r.saved.Load(),
		Delivered:   r.delivered.Load(),
		WindowTexts: r.winTexts.Load(),
		Latency:     summarize(concat(lat)),
		AckLatency:  summarize(concat(ack)),
	}
	res.Lost = max(0, res.Sent-res.Delivered)
	res.Errors, res.ErrorCodes = r.errs.snapshot()
	res.SayPerS = round3(float64(res.WindowTexts) / cfg.duration.Seconds())
	res.CPU = win.report("delivered text", res.WindowTexts)
	if res.GC, err = win.gc.report(); err != nil {
		return nil, err
	}
	if res.WindowTexts > 0 {
		res.AllocsPer = round3(float64(ms1.Mallocs-ms0.Mallocs) / float64(res.WindowTexts))
	}
	if !r.closed {
		res.Rate = cfg.rate
		lag := summarize(concat(lags))
		res.SendLag = &lag
	}
	return res, nil
}

// openLoop sends pair k's says on the schedule: the run's n-th say is due
// at t0 + n/rate, and pair k sends says k, k+P, k+2P, ..., alternately
// from a and from b, until the window ends. A say is sent late when the
// client falls behind; its latency still counts from its due time. It
// returns how late each say of the window was written.
func (r *chatRun) openLoop(a, b *side, k int, t0 int64) []int64 {
	var lag []int64
	step := float64(r.cfg.pairs) * 1e9 / r.cfg.rate
	first := float64(k) * 1e9 / r.cfg.rate
	for j := 0; ; j++ {
		sched := t0 + int64(first+float64(j)*step)
		if sched >= r.winTo {
			return lag
		}
		if d := sched - now(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		if sched >= r.winFrom {
			lag = append(lag, max(0, now()-sched))
		}
		s := a
		if j%2 == 1 {
			s = b
		}
		if !s.say(sched) {
			return lag // the connection is broken
		}
	}
}

// sleepUntil sleeps until clock time t.
func sleepUntil(t int64) {
	if d := t - now(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

// errorCounter counts errors by code and logs the first few.
type errorCounter struct {
	mu     sync.Mutex
	total  int64
	byCode map[string]int64
}

const errorsLogged = 5

func (e *errorCounter) add(code, detail string) {
	if code == "" {
		code = "unknown"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.total++
	if e.byCode == nil {
		e.byCode = map[string]int64{}
	}
	e.byCode[code]++
	if e.total <= errorsLogged {
		logf("error %s: %.300s", code, detail)
	}
}

func (e *errorCounter) snapshot() (int64, map[string]int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var m map[string]int64
	if len(e.byCode) > 0 {
		m = make(map[string]int64, len(e.byCode))
		for k, v := range e.byCode {
			m[k] = v
		}
	}
	return e.total, m
}
