package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// runFloorChild opens -members connections to the parent, says "ready",
// then reads with -readers threads, each waiting in epoll_wait and making
// one read(2) per ready socket. Each time a round's bytes are all in it
// says "done" and the CPU it spent since the last. It exits when its stdin
// closes.
func runFloorChild(cfg floorConfig) error {
	if cfg.members < 1 || cfg.readers < 1 || cfg.frameBytes < 1 {
		return errors.New("-members, -readers and -frame-bytes must be at least 1")
	}
	to, err := sockaddr(cfg.addr)
	if err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer syscall.Close(ep)
	fds := make([]int, 0, cfg.members)
	defer func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	}()
	for range cfg.members {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		fds = append(fds, fd)
		if err := syscall.Connect(fd, to); err != nil {
			return fmt.Errorf("connect %s: %w", cfg.addr, err)
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			return err
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	if _, err := fmt.Println("ready"); err != nil {
		return err
	}
	roundBytes := int64(cfg.members * cfg.frameBytes)
	var total atomic.Int64
	var mu sync.Mutex // orders the "done" lines and the CPU they report
	lastCPU := processCPU()
	failed := make(chan error, cfg.readers)
	for range cfg.readers {
		go func() {
			runtime.LockOSThread()
			events := make([]syscall.EpollEvent, 256)
			buf := make([]byte, 64<<10)
			for {
				n, err := syscall.EpollWait(ep, events, -1)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil {
					failed <- fmt.Errorf("epoll_wait: %w", err)
					return
				}
				var got int64
				for _, e := range events[:n] {
					m, err := syscall.Read(int(e.Fd), buf)
					switch {
					case errors.Is(err, syscall.EAGAIN): // another reader took it
					case err != nil:
						failed <- fmt.Errorf("read: %w", err)
						return
					case m == 0:
						failed <- errors.New("the writer closed a connection")
						return
					default:
						got += int64(m)
					}
				}
				after := total.Add(got)
				if before := after - got; before/roundBytes != after/roundBytes {
					mu.Lock()
					cpu := processCPU()
					fmt.Println("done", strconv.FormatInt(int64(cpu-lastCPU), 10))
					lastCPU = cpu
					mu.Unlock()
				}
			}
		}()
	}
	return untilStdinCloses(failed)
}

// sockaddr parses an IPv4 host:port.
func sockaddr(addr string) (*syscall.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("-addr %q: want IPv4 host:port", addr)
	}
	return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}
