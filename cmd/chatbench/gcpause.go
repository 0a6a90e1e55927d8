package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// gcPauseBucket starts the bucket lines of the servers' GC pause histogram
// (internal/metrics: the runtime's /sched/pauses/total/gc:seconds).
const gcPauseBucket = `gatewire_go_gc_pause_seconds_bucket{le="`

// metricsTarget is one server process whose /metrics the benchmark
// scrapes, as given by -metrics.
type metricsTarget struct {
	name string
	url  string // http://host:port/metrics
}

// metricsList is the -metrics flag: name=http://host:port pairs,
// comma-separated.
type metricsList []metricsTarget

func (l *metricsList) String() string {
	var parts []string
	for _, m := range *l {
		parts = append(parts, m.name+"="+strings.TrimSuffix(m.url, "/metrics"))
	}
	return strings.Join(parts, ",")
}

func (l *metricsList) Set(s string) error {
	*l = nil
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || !strings.HasPrefix(u, "http://") {
			return fmt.Errorf("want name=http://host:port, got %q", part)
		}
		if seen[name] {
			return fmt.Errorf("name %q given twice", name)
		}
		seen[name] = true
		*l = append(*l, metricsTarget{name: name, url: strings.TrimRight(u, "/") + "/metrics"})
	}
	return nil
}

// pauseHist is a cumulative GC pause histogram: counts[i] pauses of at
// most les[i] seconds, les ascending and ending with +Inf.
type pauseHist struct {
	les    []float64
	counts []float64
}

// parsePauseHist reads the gatewire_go_gc_pause_seconds buckets from a
// Prometheus text exposition.
func parsePauseHist(r io.Reader) (pauseHist, error) {
	var h pauseHist
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), gcPauseBucket)
		if !ok {
			continue
		}
		leText, countText, ok := strings.Cut(rest, `"} `)
		if !ok {
			return h, fmt.Errorf("bad bucket line %q", sc.Text())
		}
		le, err := strconv.ParseFloat(leText, 64)
		if err != nil {
			return h, fmt.Errorf("bad bucket bound in %q", sc.Text())
		}
		n, err := strconv.ParseFloat(strings.Fields(countText)[0], 64)
		if err != nil {
			return h, fmt.Errorf("bad bucket count in %q", sc.Text())
		}
		h.les = append(h.les, le)
		h.counts = append(h.counts, n)
	}
	if err := sc.Err(); err != nil {
		return h, err
	}
	if len(h.les) == 0 || !math.IsInf(h.les[len(h.les)-1], 1) || !slices.IsSorted(h.les) {
		return h, fmt.Errorf("no gatewire_go_gc_pause_seconds histogram (a server older than this chatbench?)")
	}
	return h, nil
}

// gcSummary describes the GC pauses of one process in the window. The
// figures are bucket upper bounds (the runtime keeps four buckets per
// power of two, so they overstate by up to 19%); -1 means more than 1 s.
type gcSummary struct {
	N   int64   `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// since summarises the pauses counted in h but not yet in before, which
// must come from the same process.
func (h pauseHist) since(before pauseHist) (gcSummary, error) {
	if !slices.Equal(h.les, before.les) {
		return gcSummary{}, fmt.Errorf("the buckets changed (did the process restart?)")
	}
	delta := make([]float64, len(h.counts))
	for i := range h.counts {
		delta[i] = h.counts[i] - before.counts[i]
	}
	n := delta[len(delta)-1]
	s := gcSummary{N: int64(n)}
	if n <= 0 {
		return s, nil
	}
	upper := func(rank float64) float64 {
		i := slices.IndexFunc(delta, func(c float64) bool { return c >= rank })
		if math.IsInf(h.les[i], 1) {
			return -1
		}
		return math.Round(h.les[i]*1e6) / 1e3
	}
	s.P50 = upper(math.Ceil(0.50 * n))
	s.P99 = upper(math.Ceil(0.99 * n))
	s.Max = upper(n)
	return s, nil
}

// gcWindow measures the GC pauses of the -metrics processes between start
// and stop.
type gcWindow struct {
	targets []metricsTarget
	hc      *http.Client
	before  []pauseHist
	after   []pauseHist
}

func newGCWindow(targets []metricsTarget) *gcWindow {
	return &gcWindow{targets: targets, hc: &http.Client{Timeout: 10 * time.Second}}
}

func (w *gcWindow) scrape() ([]pauseHist, error) {
	out := make([]pauseHist, len(w.targets))
	for i, t := range w.targets {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h, err := w.scrapeOne(ctx, t.url)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("GC pauses of %s (%s): %w", t.name, t.url, err)
		}
		out[i] = h
	}
	return out, nil
}

func (w *gcWindow) scrapeOne(ctx context.Context, u string) (pauseHist, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return pauseHist{}, err
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return pauseHist{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pauseHist{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return parsePauseHist(resp.Body)
}

func (w *gcWindow) start() (err error) {
	w.before, err = w.scrape()
	return err
}

func (w *gcWindow) stop() (err error) {
	w.after, err = w.scrape()
	return err
}

// report returns each process's pauses in the window, nil without
// -metrics.
func (w *gcWindow) report() (map[string]gcSummary, error) {
	if len(w.targets) == 0 || w.before == nil || w.after == nil {
		return nil, nil
	}
	out := make(map[string]gcSummary, len(w.targets))
	for i, t := range w.targets {
		s, err := w.after[i].since(w.before[i])
		if err != nil {
			return nil, fmt.Errorf("GC pauses of %s: %w", t.name, err)
		}
		out[t.name] = s
	}
	return out, nil
}
