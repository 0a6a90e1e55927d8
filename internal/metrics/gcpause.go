package metrics

import (
	"math"
	rtmetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
)

// gcPauseSample is the runtime's histogram of the stop-the-world pauses of
// the garbage collector.
const gcPauseSample = "/sched/pauses/total/gc:seconds"

// gcPauseMin and gcPauseMax bound the buckets gcPauses exports; pauses
// outside them fall into the first bucket and +Inf.
const (
	gcPauseMin = 1e-6
	gcPauseMax = 1.0
)

// gcPauses exports gcPauseSample as the histogram
// gatewire_go_gc_pause_seconds with the runtime's own buckets between
// gcPauseMin and gcPauseMax (four per power of two, about 80). The Go
// collector's copy of it keeps only powers of ten, which cannot tell a
// 0.3 ms pause from a 0.9 ms one.
type gcPauses struct{ desc *prometheus.Desc }

func newGCPauses() gcPauses {
	return gcPauses{desc: prometheus.NewDesc("gatewire_go_gc_pause_seconds",
		"Stop-the-world pauses of the garbage collector (runtime/metrics "+gcPauseSample+"); a bucket's le is the upper bound of the runtime's bucket, the sum counts each pause at its bucket's lower bound.",
		nil, nil)}
}

// Describe implements prometheus.Collector.
func (p gcPauses) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

// Collect implements prometheus.Collector.
func (p gcPauses) Collect(ch chan<- prometheus.Metric) {
	s := []rtmetrics.Sample{{Name: gcPauseSample}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return // a runtime without the metric
	}
	count, sum, buckets := cumulative(s[0].Value.Float64Histogram())
	ch <- prometheus.MustNewConstHistogram(p.desc, count, sum, buckets)
}

// cumulative turns a runtime histogram (bucket i holds [Buckets[i],
// Buckets[i+1])) into Prometheus's cumulative counts by upper bound, for
// the upper bounds in [gcPauseMin, gcPauseMax].
func cumulative(h *rtmetrics.Float64Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, 96)
	for i, n := range h.Counts {
		count += n
		if lo := h.Buckets[i]; n > 0 && !math.IsInf(lo, -1) {
			sum += lo * float64(n)
		}
		if up := h.Buckets[i+1]; up >= gcPauseMin && up <= gcPauseMax {
			buckets[up] = count
		}
	}
	return count, sum, buckets
}
