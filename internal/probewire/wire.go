// Package probewire holds the prober's wire format: the segments it injects,
// the packets it captures, and their encoder and decoder.
package probewire

import (
	"net/netip"
	"time"
)

// Packet is one TCP segment to inject: a pure ACK, optionally with payload.
type Packet struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Window   uint16
	Payload  []byte
	// ToLocal marks the learning segment, injected into the local stack as if
	// it came from the peer.
	ToLocal bool
}

// TCP flag bits in [Wire.Flags].
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
)

// Wire is one captured packet relevant to probing: a TCP segment, or an ICMP
// destination unreachable quoting a TCP segment (then Src/Dst are the quoted
// segment's, that is the local socket's outgoing direction).
type Wire struct {
	At       time.Time
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    uint8
	Window   uint16
	Len      int
	// ICMP is set for a destination unreachable; From is its sender and
	// Reason the human-readable code.
	ICMP   bool
	From   netip.Addr
	Reason string
}
