package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chatbenchTimeout bounds one chatbench run of the smoke test; the runs
// take a few seconds.
const chatbenchTimeout = 60 * time.Second

// TestBenchSmoke runs the benchmark command (cmd/chatbench) in tiny
// configurations against the e2e cluster: it must exit 0 and print one
// JSON result line; then chatbench summary must make a table of those
// lines. Nothing about speed is checked.
func TestBenchSmoke(t *testing.T) {
	c := startCluster(t)
	var lines, scenarios []string
	// record runs chatbench as runChatbench does and keeps its line.
	record := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		res, line := runChatbench(t, c, args...)
		lines, scenarios = append(lines, line), append(scenarios, args[0])
		return res
	}
	var urls, pushes, pids []string
	for i, g := range c.gateways {
		urls = append(urls, g.wsURL)
		pids = append(pids, fmt.Sprintf("gateway%d=%d", i, g.cmd.Process.Pid))
	}
	for i, w := range c.workers {
		pushes = append(pushes, "http://"+w.httpAddr)
		pids = append(pids, fmt.Sprintf("worker%d=%d", i, w.cmd.Process.Pid))
	}
	pids = append(pids, fmt.Sprintf("register=%d", c.register.cmd.Process.Pid))
	ws, pidList := strings.Join(urls, ","), strings.Join(pids, ",")

	t.Run("chat", func(t *testing.T) {
		// Open loop at 40 say/s over 2 pairs: 10 per connection and second,
		// far below the gateway's per-client message rate.
		res := record(t, "chat", "-mode", "open", "-rate", "40", "-pairs", "2",
			"-duration", "1s", "-warmup", "200ms", "-ws", ws, "-pids", pidList)
		if d := num(t, res, "delivered"); d <= 0 {
			t.Errorf("delivered = %v, want > 0", d)
		}
	})
	t.Run("fanout", func(t *testing.T) {
		res := record(t, "fanout", "-op", "group", "-members", "6", "-rounds", "3",
			"-ws", ws, "-push-http", strings.Join(pushes, ","), "-pids", pidList)
		if d := num(t, res, "delivered"); d <= 0 {
			t.Errorf("delivered = %v, want > 0", d)
		}
	})
	t.Run("host", func(t *testing.T) {
		res := record(t, "host", "-duration", "200ms", "-threads", "1")
		if f := num(t, res, "lost_fraction"); f < 0 || f > 1 {
			t.Errorf("lost_fraction = %v, want a fraction", f)
		}
	})
	t.Run("floor", func(t *testing.T) {
		res := record(t, "floor", "-members", "20", "-rounds", "3", "-warmup-rounds", "1")
		lat, _ := res["latency"].(map[string]any)
		if n, _ := lat["n"].(float64); n != 3 {
			t.Errorf("latency.n = %v, want 3 rounds", lat["n"])
		}
		if c := num(t, res, "reader_cpu_us_per_frame"); c < 0 {
			t.Errorf("reader_cpu_us_per_frame = %v, want >= 0", c)
		}
	})
	t.Run("relay", func(t *testing.T) {
		res := record(t, "relay", "-hops", "2", "-chains", "2", "-rate", "50", "-duration", "500ms", "-warmup", "100ms")
		if sent, lost := num(t, res, "sent"), num(t, res, "lost"); sent <= 0 || lost != 0 {
			t.Errorf("sent %v, lost %v; want some sent and none lost", sent, lost)
		}
	})
	t.Run("idle", func(t *testing.T) {
		res := record(t, "idle", "-n", "6", "-settle", "0s", "-ws", ws,
			"-pids", fmt.Sprintf("gateway0=%d", c.gateways[0].cmd.Process.Pid))
		if n := num(t, res, "conns"); n != 6 {
			t.Errorf("conns = %v, want 6", n)
		}
	})
	t.Run("summary", func(t *testing.T) {
		if len(lines) == 0 {
			t.Skip("no result lines: -run left out the subtests that make them")
		}
		cmd := exec.Command(filepath.Join(binDir, "chatbench"), "summary", "-")
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		out, err := cmd.CombinedOutput()
		t.Logf("chatbench summary:\n%s", out)
		if err != nil {
			t.Fatalf("chatbench summary: %v", err)
		}
		for _, scenario := range scenarios {
			if !strings.Contains(string(out), "\n| "+scenario+" | ") {
				t.Errorf("the summary has no row for %s", scenario)
			}
		}
	})
}

// runChatbench runs chatbench with args against the cluster and returns
// its result line, decoded and as printed. It fails t unless chatbench
// exits 0 and prints exactly one JSON object.
func runChatbench(t *testing.T, c *cluster, args ...string) (map[string]any, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chatbenchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "chatbench"), append(args, "-tag", "test=e2e")...)
	// The cluster's workers accept token-less binds; the push token goes
	// by the environment, as the benchmark script passes it.
	var env []string
	for _, kv := range childEnv() {
		if !strings.HasPrefix(kv, "CHATBENCH_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "CHATBENCH_PUSH_TOKEN="+c.pushToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	setDeathSignal(cmd)
	start := time.Now()
	err := cmd.Run()
	t.Logf("chatbench %s: %v in %v; stderr:\n%s", strings.Join(args, " "), cmd.ProcessState, time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("chatbench: %v", err)
	}
	out := strings.TrimSuffix(stdout.String(), "\n")
	if out == "" || strings.Contains(out, "\n") {
		t.Fatalf("chatbench printed %q, want one line", stdout.String())
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("chatbench printed %q: %v", out, err)
	}
	t.Logf("result: %s", out)
	if res["bench"] != "chatbench" || res["scenario"] != args[0] {
		t.Errorf("result names bench %v scenario %v, want chatbench %s", res["bench"], res["scenario"], args[0])
	}
	return res, out
}

// num returns a numeric field of a result.
func num(t *testing.T, res map[string]any, key string) float64 {
	t.Helper()
	v, ok := res[key].(float64)
	if !ok {
		t.Fatalf("result has no number %q: %v", key, res)
	}
	return v
}
