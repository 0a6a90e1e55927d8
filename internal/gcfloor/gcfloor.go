// Package gcfloor lets a process whose live heap is small allocate at least
// a floor of bytes between garbage collections.
//
// Go starts a collection once the heap has grown by GOGC percent of what the
// last one found live (plus stacks and globals). A server whose live heap is
// a few megabytes therefore collects after every few megabytes it allocates —
// several times a second under load, each time waking its mark workers and
// turning on write barriers — while the same percent is right, and cheaper in
// memory, once the heap is large. After every collection gcfloor sets the
// percent to the larger of the process's base percent and the one that lets
// the heap grow by the floor, so a small heap grows by the floor and a large
// one by the base percent.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with the percent (runtime/mgcpacer.go), so a percent raised for a tiny
// heap is capped to keep that minimum from overshooting the floor.
const heapMinimum = 4 << 20

// maxPercent bounds the percent whatever the heap (a heap of a few kilobytes
// would otherwise ask for millions).
const maxPercent = 100_000

// Start sets the GC percent to base and, while floor > 0 and base ≥ 0 (a
// negative base is GOGC=off), resets it after every collection to
// Percent(base, floor, the heap that collection found). stop sets it back
// to base and ends the adjustments.
func Start(base int, floor uint64) (stop func()) {
	debug.SetGCPercent(base)
	if base < 0 || floor == 0 {
		return func() {}
	}
	t := &tuner{base: base, floor: floor, last: base, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	t.arm()
	return t.stop
}

// Percent is the GC percent for a process whose base percent is base and
// whose last collection found scanned bytes (live heap, stacks and globals):
// the larger of base and the percent under which the heap grows by floor
// before the next collection.
func Percent(base int, floor, scanned uint64) int {
	scanned = max(scanned, 1)
	p := (floor*100 + scanned - 1) / scanned
	// Above GOGC=100 the runtime's minimum goal grows with the percent: keep
	// it at most what the floor asks for.
	p = min(p, (scanned+floor)*100/heapMinimum, maxPercent)
	return max(base, int(p))
}

type tuner struct {
	base  int
	floor uint64

	mu      sync.Mutex
	stopped bool
	last    int // the percent set last
	samples []metrics.Sample
}

// cycle is allocated to be collected: its cleanup runs once the collection
// that finds it unreachable is over. It holds a pointer so that it is never
// a tiny allocation (tiny blocks are shared, and their cleanups may never
// run).
type cycle struct{ _ *int }

// arm asks to hear of the next collection.
func (t *tuner) arm() {
	runtime.AddCleanup(new(cycle), (*tuner).collected, t)
}

// collected runs after each collection: it sets the percent for the heap
// that collection found and asks to hear of the next one.
func (t *tuner) collected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples)
	var scanned uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			scanned += s.Value.Uint64()
		}
	}
	if p := Percent(t.base, t.floor, scanned); p != t.last {
		debug.SetGCPercent(p)
		t.last = p
	}
	t.arm()
}

func (t *tuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.base)
	}
}
