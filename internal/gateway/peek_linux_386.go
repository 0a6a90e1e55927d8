package gateway

import "syscall"

// readableNoWait reports whether the socket has something to read: data,
// its end, or an error. linux/386 has no recvfrom system call of its own
// (it goes through socketcall), so this one tells the scheduler.
func readableNoWait(fd int) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
