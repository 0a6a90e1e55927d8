// Package e2e tests gatewire end to end: it builds the real binaries once,
// starts Redis, PostgreSQL, a register, two gateways and two workers as
// separate OS processes on loopback ports, and drives the chat through
// WebSocket clients on different gateways, through the workers' Push API and
// through the chat page in headless Chromium (TestBrowser*, also against the
// all-in-one). Failure tests kill processes with SIGKILL and check that the
// cluster recovers within one register lease; TestPersistence sends 1,000
// messages with retries, restarts every process and checks that nothing was
// lost or duplicated. TestFaults runs five faults under a steady 1:1 load —
// a gateway, a worker and the register killed, Redis flushed and
// restarted, PostgreSQL stopped and started — and prints a line of figures
// for each.
//
// The package holds only tests; run them with
//
//	go test -race -count=1 ./e2e/
//
// Under -race the binaries are built with the race detector too, and a race
// reported by any process fails the test. Every process belongs to the test
// that started it and is stopped by its PID when the test ends; each one's
// stderr goes to a file in the test's temporary directory, and the tail of
// every log is printed when the test fails. Start reading at TestCluster.
// Screenshots of the browser tests go to $ARTIFACTS_DIR (default
// /tmp/gatewire-artifacts).
package e2e
