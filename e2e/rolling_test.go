package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/testsvc"
)

// nginxPath is Debian's nginx, which scripts/test.sh installs.
const nginxPath = "/usr/sbin/nginx"

// betweenRestarts is how long the load runs between two restarts. It
// bounds a wait; it does not measure speed.
const betweenRestarts = time.Second

// TestRollingRestart restarts every process of a cluster one by one while
// users chat through nginx, which balances their WebSocket connections over
// the two gateways: each gateway with SIGTERM (it drains: its clients get
// 1012 and reconnect, through nginx, to the other), then each worker, then
// the register. The users reconnect after every drop and resend every
// unacknowledged say with the same cmid. At the end every acknowledged
// message must be stored once and have reached its peer, nothing twice. It
// prints a line of figures, on stdout too:
//
//	FAULT fault=rolling-restart sent=N acked=N delivered=N lost=0 duplicated=0 ...
//	ROLLING longest_gap_s=S
//
// where longest_gap_s is the longest time any user went without a save.
func TestRollingRestart(t *testing.T) {
	if _, err := os.Stat(nginxPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found; CI requires it (apt-get install -y nginx): %v", nginxPath, err)
		}
		t.Skipf("%s not found (apt-get install -y nginx): %v", nginxPath, err)
	}
	c := startCluster(t)
	front := startNginx(t, c)
	push := pushClient(t, c.workers[1].pushAddr, c.pushToken)

	r := &faultRun{c: c, tag: "roll"}
	r.startLoad(t, []string{front}, func() {
		r.probe = newOnlineProbe(push, r.sides, map[string]bool{"roll-never": false})
	})
	time.Sleep(warmUp)

	for i := range c.gateways {
		c.gateways[i].proc.stop(t) // SIGTERM: drain
		c.respawnGateway(t, i)
		time.Sleep(betweenRestarts)
	}
	for i := range c.workers {
		c.workers[i].proc.stop(t)
		c.respawnWorker(t, i)
		time.Sleep(betweenRestarts)
	}
	c.register.stop(t)
	c.respawnRegister(t)
	time.Sleep(afterFault)
	r.probe.watch(t, time.Now())
	r.probe.settle(t)

	if tl := r.finish(t, "rolling-restart"); tl.redelivered > 0 { // checks and prints the figures
		t.Errorf("graceful restarts delivered %d text frames twice: %s", tl.redelivered, examples(tl.dupDetail))
	}
	var gap time.Duration
	for _, s := range r.sides { // done: the test's to read
		gap = max(gap, longestGap(s.saves))
	}
	line := fmt.Sprintf("ROLLING longest_gap_s=%.2f", gap.Seconds())
	t.Log(line)
	fmt.Println(line)
	c.stopAll()
}

// longestGap is the longest time between two consecutive saves.
func longestGap(saves []frameAt) time.Duration {
	var gap time.Duration
	for i := 1; i < len(saves); i++ {
		gap = max(gap, saves[i].at.Sub(saves[i-1].at))
	}
	return gap
}

// startNginx runs nginx in front of c's gateways on a free loopback port,
// configured as deploy/nginx/gatewire.conf configures it (WebSocket upgrade,
// least connections, a draining gateway's 503 retried on the other), and
// returns its WebSocket URL. It is stopped when t ends.
func startNginx(t *testing.T, c *cluster) string {
	t.Helper()
	dir := t.TempDir()
	addr := testsvc.FreeAddr(t)
	var upstreams strings.Builder
	for _, g := range c.gateways {
		fmt.Fprintf(&upstreams, "    server %s max_fails=0;\n", g.wsAddr)
	}
	conf := fmt.Sprintf(`error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream gateways {
    least_conn;
%[2]s  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 75s;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_connect_timeout 2s;
    }
  }
}
`, dir, upstreams.String(), addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := launch(t, "nginx", nginxPath, filepath.Join(c.logDir, "nginx.log"),
		[]string{"-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off; master_process off;"})
	if err := retryUntil(context.Background(), startTimeout, 50*time.Millisecond, func() error {
		cl, err := connect("ws://"+addr+"/", "nginx probe")
		if err == nil {
			cl.closeNow()
		}
		return err
	}); err != nil {
		t.Fatalf("nginx on %s: %v (log %s)", addr, err, p.tail(20))
	}
	return "ws://" + addr + "/"
}
