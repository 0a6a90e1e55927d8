// Package e2e tests gatewire end to end: it builds the real binaries once,
// starts Redis, a register, two gateways and two workers as separate OS
// processes on loopback ports, and drives the seed's chat through WebSocket
// clients on different gateways and through the workers' Push API. Failure
// tests kill processes with SIGKILL and check that the cluster recovers
// within one register lease.
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
package e2e
