package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postgresStartTimeout bounds how long Postgres waits for the server.
const postgresStartTimeout = 30 * time.Second

// PostgresBin is where the PostgreSQL 15 server binaries are looked for,
// unless the environment variable PG_BIN names another directory.
const PostgresBin = "/usr/lib/postgresql/15/bin"

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
	bin := os.Getenv("PG_BIN")
	if bin == "" {
		bin = PostgresBin
	}
	initdb := filepath.Join(bin, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL server binaries not found in %s; CI requires them", bin)
		}
		tb.Skipf("PostgreSQL server binaries not found in %s (set PG_BIN)", bin)
	}
	cred, err := postgresCredential()
	if err != nil {
		tb.Fatalf("testsvc: %v", err)
	}
	dir, err := os.MkdirTemp("", "gatewire-pg-")
	if err != nil {
		tb.Fatalf("testsvc: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("testsvc: chown %s: %v", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "postgres.log")
	init := exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		tb.Fatalf("testsvc: initdb: %v\n%s", err, out)
	}
	var failures []string
	for attempt := 0; attempt < 5; attempt++ {
		addr := FreeAddr(tb)
		_, port, _ := net.SplitHostPort(addr)
		logFile, err := os.Create(logPath)
		if err != nil {
			tb.Fatalf("testsvc: %v", err)
		}
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", port,
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			tb.Fatalf("testsvc: start postgres: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if err := waitPostgres(bin, addr, exited); err == nil {
			tb.Cleanup(stop)
			return "postgres://postgres@" + addr + "/postgres?sslmode=disable"
		} else {
			stop()
			failures = append(failures, fmt.Sprintf("%v; log:\n%s", err, readLog(logPath)))
			if !strings.Contains(readLog(logPath), "already in use") {
				break
			}
		}
	}
	tb.Fatalf("testsvc: start postgres: %s", strings.Join(failures, "\n"))
	return ""
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
