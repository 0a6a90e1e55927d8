// Package testsvc starts real services for tests: no mocks.
//
// Redis starts a private redis-server for one test and stops it when the test
// ends; FreeAddr picks a free loopback port. Everything listens on 127.0.0.1
// only. A missing redis-server skips the test on a developer's machine and
// fails it when the environment variable CI is set. Each service belongs to
// the test that started it; share one between subtests, not between
// packages.
package testsvc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisStartTimeout bounds how long Redis waits for a server to answer PING.
const redisStartTimeout = 10 * time.Second

// redisAttempts is how many ports Redis tries: another process may take the
// port FreeAddr found before redis-server binds it.
const redisAttempts = 5

// Redis starts a fresh redis-server (found on PATH) listening on a free
// 127.0.0.1 port, with persistence off and its working directory in
// tb.TempDir, waits until it answers PING, and returns its address
// "127.0.0.1:port". The server is killed when tb's cleanup runs.
//
// Without redis-server on PATH, Redis skips the test, or fails it when the
// environment variable CI is non-empty.
func Redis(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server not found; CI requires it")
			return ""
		}
		tb.Skip("redis-server not found on PATH; install Redis to run this test")
		return ""
	}
	dir := tb.TempDir()
	var failures []string
	for attempt := 1; attempt <= redisAttempts; attempt++ {
		addr := FreeAddr(tb)
		if addr == "" { // FreeAddr failed tb already
			return ""
		}
		srv, err := startRedis(path, dir, addr, attempt)
		if err == nil {
			tb.Cleanup(srv.stop)
			return addr
		}
		failures = append(failures, err.Error())
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("testsvc: start redis-server: %s", strings.Join(failures, "; "))
	return ""
}

// FreeAddr returns "127.0.0.1:port" for a TCP port that is free now. Another
// process may take it before the caller binds it.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testsvc: find a free port: %v", err)
		return ""
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatalf("testsvc: find a free port: close %s: %v", addr, err)
		return ""
	}
	return addr
}

// errAddrInUse reports a redis-server that exited because its port was taken.
var errAddrInUse = errors.New("address already in use")

// redisServer is one running redis-server process.
type redisServer struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait has returned
}

// stop kills the server by its PID and waits for it to exit. It is safe to
// call after the process has exited on its own.
func (s *redisServer) stop() {
	_ = s.cmd.Process.Kill() // fails only when the process is already gone
	<-s.exited
}

// startRedis starts redis-server at path on addr and waits until it answers
// PING. Its output goes to a log file in dir, quoted in the returned error.
func startRedis(path, dir, addr string, attempt int) (*redisServer, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("split %s: %w", addr, err)
	}
	logPath := filepath.Join(dir, "redis-"+strconv.Itoa(attempt)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	cmd := exec.Command(path,
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", dir,
	)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	err = cmd.Start()
	_ = logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", path, err)
	}
	srv := &redisServer{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // an exit before PING is reported below; a kill is expected
		close(srv.exited)
	}()

	deadline := time.Now().Add(redisStartTimeout)
	for {
		if pingRedis(addr) == nil {
			return srv, nil
		}
		select {
		case <-srv.exited:
			out := readLog(logPath)
			if strings.Contains(out, "Address already in use") {
				return nil, fmt.Errorf("port %s: %w", port, errAddrInUse)
			}
			return nil, fmt.Errorf("redis-server on %s exited before answering PING (%s); output:\n%s",
				addr, cmd.ProcessState, out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			srv.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within %s; output:\n%s",
				addr, redisStartTimeout, readLog(logPath))
		}
	}
}

// pingRedis sends one inline PING to the server at addr and expects +PONG.
func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line) // e.g. -LOADING while starting
	}
	return nil
}

// readLog returns the contents of the log file at path, or a note saying why
// it cannot.
func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(b)
}
