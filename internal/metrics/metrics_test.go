package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/gatewire/gatewire/internal/metrics"
)

func TestHandler(t *testing.T) {
	metrics.Connections.Inc()
	defer metrics.Connections.Dec()
	metrics.SayLatency.WithLabelValues("persisted").Observe(0.001)
	runtime.GC() // at least one pause in gatewire_go_gc_pause_seconds
	srv := httptest.NewServer(metrics.Handler())
	defer srv.Close()

	body := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, text := body("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	for _, want := range []string{
		"gatewire_gateway_connections 1",
		`gatewire_chat_say_seconds_bucket{stage="persisted",le="0.001"} 1`,
		"go_gc_duration_seconds", "process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^gatewire_go_gc_pause_seconds_count [1-9]`).MatchString(text) {
		t.Error("/metrics counts no GC pause in gatewire_go_gc_pause_seconds after runtime.GC")
	}
	if n := strings.Count(text, "gatewire_go_gc_pause_seconds_bucket{"); n < 40 {
		t.Errorf("gatewire_go_gc_pause_seconds has %d buckets, want the runtime's (about 80)", n)
	}
	if code, text := body("/healthz"); code != http.StatusOK || text != "ok\n" {
		t.Errorf("/healthz: %d %q", code, text)
	}
}
