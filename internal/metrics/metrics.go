// Package metrics holds gatewire's Prometheus metrics, one set per
// process, and serves them: GET /metrics in the Prometheus text format and
// GET /healthz. Every role counts into the same registry, so the
// all-in-one reports all three. The names are documented in README.md.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every gatewire metric plus the Go runtime's (GC pauses
// as go_gc_duration_seconds, and finely bucketed as
// gatewire_go_gc_pause_seconds) and the process's (CPU, RSS, fds).
var Registry = prometheus.NewRegistry()

// latencyBuckets suit operations that take from 100 µs to a few seconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

func counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	Registry.MustRegister(c)
	return c
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	Registry.MustRegister(g)
	return g
}

func histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
	Registry.MustRegister(h)
	return h
}

// Gateway metrics.
var (
	Connections        = gauge("gatewire_gateway_connections", "Open client WebSocket connections.")
	ConnectionsRefused = counterVec("gatewire_gateway_connections_refused_total", "Connections refused before the handshake, by reason (max_conns, max_conns_per_ip, shutting_down).", "reason")
	FramesReceived     = counter("gatewire_gateway_frames_received_total", "Frames received from clients.")
	FramesSent         = counter("gatewire_gateway_frames_sent_total", "Frames written to clients (to the socket, or to the backlog it takes them from).")
	Commands           = counter("gatewire_gateway_commands_total", "Commands received from workers.")
	EventsForwarded    = counter("gatewire_gateway_events_forwarded_total", "Client events forwarded to workers.")
	RateLimited        = counterVec("gatewire_gateway_rate_limited_total", "Frames over the per-connection rate: refused with an error frame, or the connection closed with 1008.", "action")
	SlowClientsClosed  = counter("gatewire_gateway_slow_clients_closed_total", "Clients closed because their send queue overflowed.")
)

// Worker metrics.
var (
	WorkerEvents = counterVec("gatewire_worker_events_total", "Client events handled, by kind (connect, message, close, lost_close).", "kind")
	LaneQueue    = gauge("gatewire_worker_lane_queue", "Events waiting in the worker's lanes.")
	WorkerLinks  = gauge("gatewire_worker_links", "Open links to gateways.")
)

// Chat and storage metrics.
var (
	// SayLatency is the time from a say's arrival at the worker to its
	// message being persisted and to its delivery to the peer's gateways.
	SayLatency = histogramVec("gatewire_chat_say_seconds", "Say latency from arrival at the worker, by stage (persisted, delivered).", "stage")
	Says       = counterVec("gatewire_chat_says_total", "Says handled, by result (saved, duplicate, refused, store_failed).", "result")
	StoreOps   = histogramVec("gatewire_store_seconds", "Message store call latency, by operation and result (ok, error).", "op", "result")
	RedisOps   = histogramVec("gatewire_redis_seconds", "Redis command (or pipeline) latency, by command and result (ok, error).", "cmd", "result")

	DirectoryCache          = counterVec("gatewire_directory_cache_uids_total", "Uids looked up through the worker's directory cache, by result (hit, miss, off: no change feed, read through).", "result")
	DirectoryCacheFollowing = gauge("gatewire_directory_cache_following", "1 while the directory cache hears every change of the directory (Redis pub/sub) and may answer from memory.")
)

// The label values of the hot paths, resolved once: a lookup by label
// hashes and locks on every call.
var (
	RateLimitRefused = RateLimited.WithLabelValues("refused")
	RateLimitClosed  = RateLimited.WithLabelValues("closed")

	EventsConnect   = WorkerEvents.WithLabelValues("connect")
	EventsMessage   = WorkerEvents.WithLabelValues("message")
	EventsClose     = WorkerEvents.WithLabelValues("close")
	EventsLostClose = WorkerEvents.WithLabelValues("lost_close")

	DirectoryCacheHits   = DirectoryCache.WithLabelValues("hit")
	DirectoryCacheMisses = DirectoryCache.WithLabelValues("miss")
	DirectoryCacheOff    = DirectoryCache.WithLabelValues("off")

	SayPersisted    = SayLatency.WithLabelValues("persisted")
	SayDelivered    = SayLatency.WithLabelValues("delivered")
	SaysSaved       = Says.WithLabelValues("saved")
	SaysDuplicate   = Says.WithLabelValues("duplicate")
	SaysRefused     = Says.WithLabelValues("refused")
	SaysStoreFailed = Says.WithLabelValues("store_failed")
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newGCPauses())
}

// Result is the result label of an error.
func Result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Since observes the seconds since start on h.
func Since(h prometheus.Observer, start time.Time) { h.Observe(time.Since(start).Seconds()) }

// Handler serves /metrics and /healthz.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
