//go:build !(linux && 386)

package gateway

import (
	"syscall"
	"unsafe"
)

// readableNoWait reports whether the socket has something to read: data,
// its end, or an error. It is a raw recvfrom(2) with MSG_PEEK (see
// writeNoWait).
func readableNoWait(fd int) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}
