package gateway

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// clientFrame is a masked client frame (RFC 6455 5.2) with the given first
// byte and a payload of n bytes.
func clientFrame(b0 byte, n int) []byte {
	f := []byte{b0}
	switch {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	f = append(f, 1, 2, 3, 4) // mask key
	return append(f, make([]byte, n)...)
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
		{clientFrame(textFin, 0), true},
		{clientFrame(textFin, 5), true},
		{clientFrame(pong, 3), true},
		{clientFrame(textFin, 125), true},
		{clientFrame(textFin, 126), true},
		{clientFrame(textFin, 70000), true},
		{clientFrame(textMore, 10), false},
		{clientFrame(ping, 4), false}, // a control frame inside a message
		{clientFrame(contMore, 300), false},
		{clientFrame(contFin, 1), true},
		{clientFrame(ping, 0), true},
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
