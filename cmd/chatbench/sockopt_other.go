//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// noPortReservation does nothing outside Linux.
func noPortReservation(network, address string, rc syscall.RawConn) error { return nil }

// raiseFDLimit is only implemented on Linux, where the benchmark runs
// (it reads /proc).
func raiseFDLimit() (uint64, error) { return 0, errors.New("not supported on this system") }
