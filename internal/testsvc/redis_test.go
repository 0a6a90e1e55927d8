package testsvc

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("FreeAddr() = %q: %v", addr, err)
	}
	if host != "127.0.0.1" || port == "0" {
		t.Fatalf("FreeAddr() = %q, want 127.0.0.1 and a non-zero port", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr() = %q: %v", addr, err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRedis(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		addr = Redis(t)
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			t.Fatalf("Redis() = %q, want 127.0.0.1:port", addr)
		}
		if err := pingRedis(addr); err != nil {
			t.Fatalf("PING %s: %v", addr, err)
		}
	})
	if addr == "" {
		t.Skip("no redis-server")
	}
	// The subtest's cleanup has run: the server must be gone.
	if err := pingRedis(addr); err == nil {
		t.Fatalf("redis-server on %s still answers after cleanup", addr)
	}
}

// recordingTB records Skip and Fatal instead of stopping the test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recordingTB) Fatal(args ...any)                 { r.failed = fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestRedisMissing(t *testing.T) {
	tests := []struct {
		ci                  string
		wantSkip, wantFatal string
	}{
		{ci: "", wantSkip: "redis-server not found"},
		{ci: "true", wantFatal: "redis-server not found; CI requires it"},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tt.ci)
			tb := &recordingTB{TB: t}
			if addr := Redis(tb); addr != "" {
				t.Errorf("Redis() = %q without redis-server, want \"\"", addr)
			}
			if (tb.skipped == "") != (tt.wantSkip == "") || !strings.Contains(tb.skipped, tt.wantSkip) {
				t.Errorf("skipped with %q, want %q", tb.skipped, tt.wantSkip)
			}
			if (tb.failed == "") != (tt.wantFatal == "") || !strings.Contains(tb.failed, tt.wantFatal) {
				t.Errorf("failed with %q, want %q", tb.failed, tt.wantFatal)
			}
		})
	}
}

func TestRedisServerRestart(t *testing.T) {
	s := StartRedis(t)
	addr := s.Addr()
	if reply, err := inlineCommand(addr, "SET k v"); err != nil || reply != "+OK\r\n" {
		t.Fatalf("SET k v = %q, %v; want +OK", reply, err)
	}
	if err := s.FlushAll(); err != nil {
		t.Fatal(err)
	}
	if reply, err := inlineCommand(addr, "EXISTS k"); err != nil || reply != ":0\r\n" {
		t.Fatalf("EXISTS k after FLUSHALL = %q, %v; want :0", reply, err)
	}

	s.Stop()
	if err := pingRedis(addr); err == nil {
		t.Fatalf("redis-server on %s still answers after Stop", addr)
	}
	s.Stop() // stopping again does nothing
	if err := s.Start(); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if err := pingRedis(addr); err != nil {
		t.Fatalf("PING %s after Start: %v", addr, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr() != addr {
		t.Fatalf("Addr() = %q after Restart, want %q", s.Addr(), addr)
	}
	if err := pingRedis(addr); err != nil {
		t.Fatalf("PING %s after Restart: %v", addr, err)
	}
}
