package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gatewire/gatewire/internal/testsvc"
)

// TestRedisCluster runs the chat on a cluster whose directory and gateway
// leases are on a Redis Cluster of three masters (-redis with three
// addresses): the gateways announce themselves and the workers link to
// them, a say crosses gateways both ways, a uid that moves to another
// gateway is reached there at once though the workers had just looked it
// up (their caches heard the change through a node's PUBLISH), and every
// worker's directory cache follows the change feed.
func TestRedisCluster(t *testing.T) {
	c := startClusterOn(t, "", testsvc.RedisCluster(t))
	a, b := c.dial(t, 0, "a"), c.dial(t, 1, "b")
	a.bind("85")
	b.bind("86")
	chat(t, a, "85", b, "86", "hello across the cluster")
	chat(t, b, "86", a, "85", "hello back")

	b.close()
	moved := c.dial(t, 0, "moved")
	moved.bind("86")
	chat(t, a, "85", moved, "86", "found you on the other gateway")
	expectNothing(t, a, moved)

	for _, w := range c.workers {
		if got := metric(t, w.proc, "gatewire_directory_cache_following"); got != "1" {
			t.Errorf("%s: gatewire_directory_cache_following is %q, want 1: its cache does not follow the change feed", w.name, got)
		}
		if log := w.log(); strings.Contains(log, "directory change feed down") {
			t.Errorf("%s: its directory change feed went down:\n%s", w.name, w.tail(20))
		}
	}
}

// metricsAddrRE finds the address a process logs for its /metrics.
var metricsAddrRE = regexp.MustCompile(`msg="metrics listening".* addr=(http://\S+/metrics)`)

// metric returns the value of the unlabelled metric name on the /metrics
// of p, whose address p logged at start.
func metric(t *testing.T, p *proc, name string) string {
	t.Helper()
	m := metricsAddrRE.FindStringSubmatch(p.log())
	if m == nil {
		t.Fatalf("%s: no metrics address in its log", p.name)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.name, m[1], err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET %s: %s, %v", p.name, m[1], resp.Status, err)
	}
	for line := range strings.Lines(string(body)) {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return value
		}
	}
	t.Fatalf("%s: no %s in %s", p.name, name, m[1])
	return ""
}
