//go:build !linux

package main

import "errors"

// runFloorChild needs epoll.
func runFloorChild(floorConfig) error { return errors.New("the floor scenario runs on Linux only") }
