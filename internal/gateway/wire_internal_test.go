package gateway

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// clientFrame is a masked client frame (RFC 6455 5.2) with first byte b0.
func clientFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	mask := [4]byte{0x11, 0x22, 0x33, 0x44}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

// TestFrameTracker feeds a stream of frames in random pieces and checks
// that the tracker rests exactly where a message has been read in full.
func TestFrameTracker(t *testing.T) {
	const (
		textFin  = 0x81
		textMore = 0x01
		contMore = 0x00
		contFin  = 0x80
		ping     = 0x89
		pong     = 0x8a
	)
	frames := []struct {
		frame []byte
		rests bool // after this frame
	}{
		{clientFrame(textFin, make([]byte, 0)), true},
		{clientFrame(textFin, make([]byte, 5)), true},
		{clientFrame(pong, make([]byte, 3)), true},
		{clientFrame(textFin, make([]byte, 125)), true},
		{clientFrame(textFin, make([]byte, 126)), true},
		{clientFrame(textFin, make([]byte, 70000)), true},
		{clientFrame(textMore, make([]byte, 10)), false},
		{clientFrame(ping, make([]byte, 4)), false}, // a control frame inside a message
		{clientFrame(contMore, make([]byte, 300)), false},
		{clientFrame(contFin, make([]byte, 1)), true},
		{clientFrame(ping, make([]byte, 0)), true},
	}
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		var tr frameTracker
		for i, f := range frames {
			rest := f.frame
			for len(rest) > 0 {
				if tr.resting() && len(rest) < len(f.frame) {
					t.Fatalf("seed %d frame %d: resting with %d bytes of it to come", seed, i, len(rest))
				}
				n := 1 + r.IntN(min(len(rest), 40))
				if seed == 0 {
					n = 1 // byte by byte
				}
				tr.feed(rest[:n])
				rest = rest[n:]
			}
			if tr.resting() != f.rests {
				t.Fatalf("seed %d: after frame %d resting = %v, want %v", seed, i, tr.resting(), f.rests)
			}
		}
	}
}
