package main

import (
	"syscall"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT socket option
// (linux/in.h), which the syscall package does not name.
const ipBindAddressNoPort = 24

// noPortReservation lets a socket bound to a source address (-src) pick
// its ephemeral port at connect time instead of at bind time, so that a
// port is only unique per (source, destination) pair: each source address
// then has the whole ephemeral range towards each gateway, and several
// chatbench processes may share source addresses.
func noPortReservation(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	// An old kernel without the option still works, with the smaller
	// port space.
	_ = serr
	return nil
}

// raiseFDLimit raises the soft limit of open files to the hard limit and
// returns the new soft limit.
func raiseFDLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, err
		}
	}
	return r.Cur, nil
}
