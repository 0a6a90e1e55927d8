// Package testsvc starts real services for tests: no mocks.
//
// Redis starts a private redis-server for one test and stops it when the test
// ends; StartRedis does the same and returns a handle that stops, starts and
// restarts it on the same address, for outage tests; RedisCluster starts
// three of them as one Redis Cluster and RedisClusterClient returns a
// client of such a cluster. Postgres and
// StartPostgres do the same for PostgreSQL 15. FreeAddr picks a free loopback
// port. Everything listens on 127.0.0.1 only. A missing redis-server skips
// the test on a developer's machine and fails it when the environment
// variable CI is set. Each service belongs to
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
	"sync"
	"syscall"
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
// "127.0.0.1:port". The server is stopped when tb's cleanup runs.
//
// Without redis-server on PATH, Redis skips the test, or fails it when the
// environment variable CI is non-empty.
func Redis(tb testing.TB) string {
	tb.Helper()
	s := StartRedis(tb)
	if s == nil { // tb skipped or failed already
		return ""
	}
	return s.Addr()
}

// RedisServer is a private redis-server that a test started with
// StartRedis. Stop, Start and Restart take it down and bring it back on the
// same address, for tests of a Redis outage; it keeps no data, so it comes
// back empty. Its methods are safe for concurrent use.
type RedisServer struct {
	path string // the redis-server binary
	dir  string // working directory and logs
	addr string
	args []string // more server options

	mu     sync.Mutex
	proc   *redisProcess // nil while stopped
	starts int           // processes started, numbering their logs
}

// StartRedis is Redis returning a handle on the server instead of its
// address. It returns nil when tb was skipped or failed (which, for a
// *testing.T, does not return).
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	return startRedisServer(tb)
}

// startRedisServer is StartRedis with more server options.
func startRedisServer(tb testing.TB, args ...string) *RedisServer {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server not found; CI requires it")
			return nil
		}
		tb.Skip("redis-server not found on PATH; install Redis to run this test")
		return nil
	}
	s := &RedisServer{path: path, dir: tb.TempDir(), args: args}
	var failures []string
	for attempt := 1; attempt <= redisAttempts; attempt++ {
		addr := FreeAddr(tb)
		if addr == "" { // FreeAddr failed tb already
			return nil
		}
		s.addr = addr
		err := s.Start()
		if err == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		failures = append(failures, err.Error())
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("testsvc: start redis-server: %s", strings.Join(failures, "; "))
	return nil
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *RedisServer) Addr() string { return s.addr }

// Start starts the server on its address, if it is not running, and waits
// until it answers PING. It fails when the port was taken meanwhile.
func (s *RedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	s.starts++
	proc, err := startRedis(s.path, s.dir, s.addr, s.starts, s.args)
	if err != nil {
		return err
	}
	s.proc = proc
	return nil
}

// Stop stops the server with SIGTERM (SIGKILL if it takes longer than
// redisStopGrace) and waits until it has exited. Stopping a stopped server
// does nothing.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop()
		s.proc = nil
	}
}

// Restart stops the server and starts it again on the same address.
func (s *RedisServer) Restart() error {
	s.Stop()
	return s.Start()
}

// FlushAll deletes every key of every database, as FLUSHALL does.
func (s *RedisServer) FlushAll() error {
	reply, err := inlineCommand(s.addr, "FLUSHALL")
	if err != nil {
		return fmt.Errorf("testsvc: FLUSHALL on %s: %w", s.addr, err)
	}
	if reply != "+OK\r\n" {
		return fmt.Errorf("testsvc: FLUSHALL on %s answered %q", s.addr, reply)
	}
	return nil
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

// redisStopGrace is how long a redis-server may take to exit after SIGTERM
// before it is killed.
const redisStopGrace = 5 * time.Second

// redisProcess is one running redis-server process.
type redisProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait has returned
}

// stop ends the server by its PID, with SIGTERM and after redisStopGrace
// SIGKILL, and waits for it to exit. It is safe to call after the process
// has exited on its own.
func (p *redisProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only when the process is already gone
	select {
	case <-p.exited:
	case <-time.After(redisStopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// startRedis starts redis-server at path on addr, with the options args
// after the usual ones, and waits until it answers PING. Its output goes to
// the log file redis-<n>.log in dir, quoted in the returned error.
func startRedis(path, dir, addr string, n int, args []string) (*redisProcess, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("split %s: %w", addr, err)
	}
	logPath := filepath.Join(dir, "redis-"+strconv.Itoa(n)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	cmd := exec.Command(path, append([]string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", dir,
	}, args...)...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	err = cmd.Start()
	_ = logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", path, err)
	}
	p := &redisProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // an exit before PING is reported below; a kill is expected
		close(p.exited)
	}()

	deadline := time.Now().Add(redisStartTimeout)
	for {
		if pingRedis(addr) == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			out := readLog(logPath)
			if strings.Contains(out, "Address already in use") {
				return nil, fmt.Errorf("port %s: %w", port, errAddrInUse)
			}
			return nil, fmt.Errorf("redis-server on %s exited before answering PING (%s); output:\n%s",
				addr, cmd.ProcessState, out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within %s; output:\n%s",
				addr, redisStartTimeout, readLog(logPath))
		}
	}
}

// pingRedis sends one inline PING to the server at addr and expects +PONG.
func pingRedis(addr string) error {
	line, err := inlineCommand(addr, "PING")
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line) // e.g. -LOADING while starting
	}
	return nil
}

// inlineCommand sends one inline command to the server at addr on a new
// connection and returns the first line of the reply, "\r\n" included.
func inlineCommand(addr, command string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
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
