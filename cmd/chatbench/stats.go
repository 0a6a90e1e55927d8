package main

import (
	"math"
	"slices"
)

// latSummary summarises latency samples. Percentiles are exact: the
// samples are kept and sorted (nearest rank).
type latSummary struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// summarize sorts ns (nanoseconds) in place and summarises it.
func summarize(ns []int64) latSummary {
	if len(ns) == 0 {
		return latSummary{}
	}
	slices.Sort(ns)
	var sum float64
	for _, v := range ns {
		sum += float64(v)
	}
	return latSummary{
		N:    len(ns),
		Mean: ms(sum / float64(len(ns))),
		P50:  ms(float64(quantile(ns, 0.50))),
		P90:  ms(float64(quantile(ns, 0.90))),
		P99:  ms(float64(quantile(ns, 0.99))),
		P999: ms(float64(quantile(ns, 0.999))),
		Max:  ms(float64(ns[len(ns)-1])),
	}
}

// quantile returns the nearest-rank q-quantile of sorted: the smallest
// sample at least a fraction q of the samples are less than or equal to.
func quantile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// ms converts nanoseconds to milliseconds with microsecond precision.
func ms(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }

func round3(v float64) float64 { return math.Round(v*1e3) / 1e3 }

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// concat joins the per-connection sample slices into one.
func concat(parts [][]int64) []int64 {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]int64, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
