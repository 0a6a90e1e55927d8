package main

import (
	"errors"
	"flag"
	"runtime"
	"sync"
	"time"
)

// hostConfig holds the host scenario's flags.
type hostConfig struct {
	duration time.Duration
	threads  int
}

func hostFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c hostConfig
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each thread watches the clock")
	fs.IntVar(&c.threads, "threads", runtime.NumCPU(), "threads that spin at once, each on an OS thread of its own (default one per CPU)")
	return func(o *common) (any, error) { return runHost(o, c) }
}

// hostResult is the host scenario's output line: how often a thread that
// never sleeps found the clock had jumped, that is, was not running. On an
// idle machine of its own that is rare and brief; on a virtual machine
// whose host runs others it is the time the vCPUs were taken away, which
// every latency and GC pause measured that day includes.
type hostResult struct {
	header
	DurationS float64 `json:"duration_s"`
	Threads   int     `json:"threads"`
	// Gaps counts the clock jumps over 0.2 ms and over 1 ms, per thread
	// and second.
	GapsPerS    float64 `json:"gaps_over_0_2ms_per_s"`
	BigGapsPerS float64 `json:"gaps_over_1ms_per_s"`
	MaxGapMS    float64 `json:"max_gap_ms"`
	// LostFraction is the share of the threads' time in gaps over 0.2 ms.
	LostFraction float64 `json:"lost_fraction"`
}

// hostGap is where a spinning thread counts a jump of the clock.
const hostGap = 200 * time.Microsecond

func runHost(o *common, cfg hostConfig) (any, error) {
	if cfg.duration <= 0 || cfg.threads < 1 {
		return nil, errors.New("-duration must be positive and -threads at least 1")
	}
	type watch struct {
		gaps, big int
		max, lost time.Duration
	}
	watches := make([]watch, cfg.threads)
	var wg sync.WaitGroup
	for i := range watches {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w := &watches[i]
			prev := time.Now()
			end := prev.Add(cfg.duration)
			for prev.Before(end) {
				now := time.Now()
				if d := now.Sub(prev); d > hostGap {
					w.gaps++
					w.lost += d
					w.max = max(w.max, d)
					if d > time.Millisecond {
						w.big++
					}
				}
				prev = now
			}
		})
	}
	wg.Wait()
	var all watch
	for _, w := range watches {
		all.gaps += w.gaps
		all.big += w.big
		all.lost += w.lost
		all.max = max(all.max, w.max)
	}
	threadSeconds := cfg.duration.Seconds() * float64(cfg.threads)
	return hostResult{
		header:       o.header(),
		DurationS:    cfg.duration.Seconds(),
		Threads:      cfg.threads,
		GapsPerS:     round3(float64(all.gaps) / threadSeconds),
		BigGapsPerS:  round3(float64(all.big) / threadSeconds),
		MaxGapMS:     ms(float64(all.max)),
		LostFraction: round4(all.lost.Seconds() / threadSeconds),
	}, nil
}
