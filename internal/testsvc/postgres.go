package testsvc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// postgresStartTimeout bounds how long Postgres waits for the server.
const postgresStartTimeout = 30 * time.Second

// PostgresBin is where the PostgreSQL 15 server binaries are looked for,
// unless the environment variable PG_BIN names another directory.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// postgresStopTimeout bounds how long a fast shutdown may take before the
// server is told to shut down immediately.
const postgresStopTimeout = 30 * time.Second

// postgresAttempts is how many ports Postgres tries: another process may
// take the port FreeAddr found before the server binds it.
const postgresAttempts = 5

// Postgres initialises a throwaway PostgreSQL cluster in a temporary
// directory, starts it on a free 127.0.0.1 port (no Unix socket, fsync off:
// a test server), waits until it accepts connections and returns a DSN for
// its "postgres" database as superuser "postgres" (trust auth). The server
// is stopped by its PID and the directory removed when tb's cleanup runs.
//
// PostgreSQL refuses to run as root; when the test runs as root the server
// runs as the system user "postgres". Without the binaries, Postgres skips
// the test, or fails it when the environment variable CI is non-empty.
func Postgres(tb testing.TB) string {
	tb.Helper()
	s := StartPostgres(tb)
	if s == nil { // tb skipped or failed already
		return ""
	}
	return s.DSN()
}

// PostgresServer is a throwaway PostgreSQL server that a test started with
// StartPostgres. Stop, Start and Restart take it down and bring it back on
// the same port and data directory, for tests of a database outage: what
// was committed before a Stop is there after the Start. Its methods are
// safe for concurrent use.
type PostgresServer struct {
	bin  string              // the server binaries
	cred *syscall.Credential // the server's user; nil: the test's
	dir  string              // data directory and logs
	addr string

	mu     sync.Mutex
	proc   *pgProcess // nil while stopped
	starts int        // processes started, numbering their logs
}

// pgProcess is one running postgres process.
type pgProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait has returned
}

// StartPostgres is Postgres returning a handle on the server instead of its
// DSN. It returns nil when tb was skipped or failed (which, for a
// *testing.T, does not return).
func StartPostgres(tb testing.TB) *PostgresServer {
	tb.Helper()
	bin := os.Getenv("PG_BIN")
	if bin == "" {
		bin = PostgresBin
	}
	initdb := filepath.Join(bin, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL server binaries not found in %s; CI requires them", bin)
			return nil
		}
		tb.Skipf("PostgreSQL server binaries not found in %s (set PG_BIN)", bin)
		return nil
	}
	cred, err := postgresCredential()
	if err != nil {
		tb.Fatalf("testsvc: %v", err)
		return nil
	}
	dir, err := os.MkdirTemp("", "gatewire-pg-")
	if err != nil {
		tb.Fatalf("testsvc: %v", err)
		return nil
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("testsvc: chown %s: %v", dir, err)
			return nil
		}
	}
	s := &PostgresServer{bin: bin, cred: cred, dir: dir}
	init := exec.Command(initdb, "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		tb.Fatalf("testsvc: initdb: %v\n%s", err, out)
		return nil
	}
	var failures []string
	for attempt := 1; attempt <= postgresAttempts; attempt++ {
		s.addr = FreeAddr(tb)
		if s.addr == "" { // FreeAddr failed tb already
			return nil
		}
		err := s.Start()
		if err == nil {
			tb.Cleanup(s.kill)
			return s
		}
		failures = append(failures, err.Error())
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("testsvc: start postgres: %s", strings.Join(failures, "\n"))
	return nil
}

// DSN returns the URL of the server's "postgres" database as superuser
// "postgres".
func (s *PostgresServer) DSN() string {
	return "postgres://postgres@" + s.addr + "/postgres?sslmode=disable"
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *PostgresServer) Addr() string { return s.addr }

// data returns the server's data directory.
func (s *PostgresServer) data() string { return filepath.Join(s.dir, "data") }

// Start starts the server on its port and data directory, if it is not
// running, and waits until it accepts connections. It fails when the port
// was taken meanwhile.
func (s *PostgresServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	s.starts++
	logPath := filepath.Join(s.dir, fmt.Sprintf("postgres-%d.log", s.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data(), "-p", port,
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p := &pgProcess{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := waitPostgres(s.bin, s.addr, p.exited); err != nil {
		p.stop(syscall.SIGQUIT, 5*time.Second)
		log := readLog(logPath)
		if strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: %w", err, errAddrInUse)
		}
		return fmt.Errorf("%w; log:\n%s", err, log)
	}
	s.proc = p
	return nil
}

// Stop shuts the server down the fast way (SIGINT: clients are
// disconnected, open transactions roll back, committed ones are flushed)
// and waits until it has exited. Stopping a stopped server does nothing.
func (s *PostgresServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop(syscall.SIGINT, postgresStopTimeout)
		s.proc = nil
	}
}

// Restart stops the server and starts it again on the same port and data
// directory.
func (s *PostgresServer) Restart() error {
	s.Stop()
	return s.Start()
}

// kill shuts the server down immediately (SIGQUIT), for the cleanup: the
// data is thrown away.
func (s *PostgresServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop(syscall.SIGQUIT, 5*time.Second)
		s.proc = nil
	}
}

// stop sends sig to the server by its PID and waits for it to exit,
// killing it after timeout. It is safe to call after the process has
// exited on its own.
func (p *pgProcess) stop(sig syscall.Signal, timeout time.Duration) {
	_ = p.cmd.Process.Signal(sig) // fails only when the process is already gone
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitPostgres waits until the server at addr accepts connections
// (pg_isready), or fails when it exits or does not within the timeout.
func waitPostgres(bin, addr string, exited <-chan struct{}) error {
	host, port, _ := net.SplitHostPort(addr)
	deadline := time.Now().Add(postgresStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("postgres on %s exited", addr)
		default:
		}
		if exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", host, "-p", port, "-t", "1").Run() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("postgres on %s did not accept connections within %s", addr, postgresStartTimeout)
}

// postgresCredential returns the credential to run the server with: nil
// when not root, the "postgres" system user when root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no system user \"postgres\" to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
