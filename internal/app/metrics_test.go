package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// TestMetricsPprof: the metrics listener serves /metrics always and
// /debug/pprof/ only with Pprof.
func TestMetricsPprof(t *testing.T) {
	for _, withPprof := range []bool{false, true} {
		lis, err := listen("test", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close() // startMetrics listens itself
		ctx, cancel := context.WithCancel(context.Background())
		var g errgroup.Group
		if err := startMetrics(ctx, &g, "test", MetricsConfig{Addr: addr, Pprof: withPprof}, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		get := func(path string) (int, string) {
			var resp *http.Response
			for i := 0; ; i++ {
				resp, err = http.Get("http://" + addr + path)
				if err == nil || i == 50 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("pprof=%v: /metrics: %d", withPprof, code)
		}
		code, body := get("/debug/pprof/")
		if withPprof && (code != http.StatusOK || !strings.Contains(body, "goroutine")) {
			t.Errorf("with pprof: /debug/pprof/: %d", code)
		}
		if !withPprof && code == http.StatusOK {
			t.Errorf("without pprof: /debug/pprof/ answered 200")
		}
		cancel()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}
