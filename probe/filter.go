package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// Capture filter limits: a classic BPF program holds at most 4096
// instructions; these keep it far below.
const (
	maxFilterEndpoints4 = 64
	maxFilterEndpoints6 = 24
	filterSnap          = 256 // bytes kept per packet: IP + TCP headers, or ICMP + quote
)

// endpoint matches packets whose source or destination is addr (and port,
// when non-zero).
type endpoint struct {
	addr netip.Addr
	port uint16
}

// filterEndpoints picks, for one address family, the smallest description of
// the flows that fits the limit: remote endpoints, local endpoints, remote
// addresses, local addresses. nil with all=true means "every TCP segment".
func filterEndpoints(flows []Flow, limit int) (eps []endpoint, all bool) {
	if len(flows) == 0 {
		return nil, false
	}
	pick := func(f func(Flow) endpoint) []endpoint {
		seen := map[endpoint]bool{}
		var out []endpoint
		for _, fl := range flows {
			e := f(fl)
			if !seen[e] {
				seen[e] = true
				out = append(out, e)
				if len(out) > limit {
					return nil
				}
			}
		}
		slices.SortFunc(out, func(a, b endpoint) int {
			if c := a.addr.Compare(b.addr); c != 0 {
				return c
			}
			return int(a.port) - int(b.port)
		})
		return out
	}
	for _, f := range []func(Flow) endpoint{
		func(f Flow) endpoint { return endpoint{f.Remote.Addr(), f.Remote.Port()} },
		func(f Flow) endpoint { return endpoint{f.Local.Addr(), f.Local.Port()} },
		func(f Flow) endpoint { return endpoint{f.Remote.Addr(), 0} },
		func(f Flow) endpoint { return endpoint{f.Local.Addr(), 0} },
	} {
		if eps := pick(f); eps != nil {
			return eps, false
		}
	}
	return nil, true
}

// buildFilter returns a classic BPF program for an AF_PACKET SOCK_DGRAM
// socket (data starts at the network header) that accepts TCP segments to or
// from the flows' endpoints and ICMP/ICMPv6 destination unreachable, and
// drops everything else in the kernel. Segments carrying payload are not
// sampled: with GSO/GRO a bulk transfer is few, large packets, and a busy
// flow needs them for passive learning.
func buildFilter(flows []Flow) ([]bpf.Instruction, error) {
	var f4, f6 []Flow
	for _, f := range flows {
		f = f.Normalize()
		if !f.Valid() {
			return nil, fmt.Errorf("invalid flow %v", f)
		}
		if f.Local.Addr().Is4() {
			f4 = append(f4, f)
		} else {
			f6 = append(f6, f)
		}
	}
	accept := bpf.RetConstant{Val: filterSnap}
	reject := bpf.RetConstant{Val: 0}

	v4 := []bpf.Instruction{reject}
	if len(f4) > 0 {
		eps, all := filterEndpoints(f4, maxFilterEndpoints4)
		icmp := []bpf.Instruction{
			bpf.LoadMemShift{Off: 0},
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipTrue: 0, SkipFalse: 1},
			accept,
			reject,
		}
		tcp := []bpf.Instruction{
			// Fragments other than the first carry no TCP header.
			bpf.LoadAbsolute{Off: 6, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 0, SkipFalse: 1},
			reject,
			bpf.LoadMemShift{Off: 0},
		}
		if !all {
			for _, e := range eps {
				a := binary.BigEndian.Uint32(e.addr.AsSlice())
				tcp = append(tcp, side([]uint32{a}, 12, e.port, 0, bpf.Jump{Skip: acceptMark})...)
				tcp = append(tcp, side([]uint32{a}, 16, e.port, 2, bpf.Jump{Skip: acceptMark})...)
			}
			tcp = append(tcp, reject)
		}
		tcp = linkAccept(append(tcp, accept), len(tcp))
		v4 = append([]bpf.Instruction{
			bpf.LoadAbsolute{Off: 9, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: uint32(3 + len(icmp))}, // to tcp
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: 1}, // to icmp
			reject,
		}, append(icmp, tcp...)...)
	}
	v6 := []bpf.Instruction{reject}
	if len(f6) > 0 {
		eps, all := filterEndpoints(f6, maxFilterEndpoints6)
		icmp := []bpf.Instruction{
			bpf.LoadAbsolute{Off: 40, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 0, SkipFalse: 1},
			accept,
			reject,
		}
		var tcp []bpf.Instruction
		if !all {
			for _, e := range eps {
				b := e.addr.As16()
				words := []uint32{
					binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8]),
					binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16]),
				}
				tcp = append(tcp, side6(words, 8, e.port, 40, bpf.Jump{Skip: acceptMark})...)
				tcp = append(tcp, side6(words, 24, e.port, 42, bpf.Jump{Skip: acceptMark})...)
			}
			tcp = append(tcp, reject)
		}
		tcp = linkAccept(append(tcp, accept), len(tcp))
		v6 = append([]bpf.Instruction{
			bpf.LoadAbsolute{Off: 6, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: uint32(3 + len(icmp))},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 58, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: 1},
			reject,
		}, append(icmp, tcp...)...)
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 0, SkipFalse: 1},
		bpf.Jump{Skip: 3}, // to v4
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 0, SkipFalse: 1},
		bpf.Jump{Skip: uint32(1 + len(v4))}, // to v6
		reject,
	}
	prog = append(prog, v4...)
	prog = append(prog, v6...)
	if len(prog) > 4000 {
		return nil, fmt.Errorf("capture filter too long (%d instructions)", len(prog))
	}
	if _, err := bpf.Assemble(prog); err != nil {
		return nil, fmt.Errorf("assemble capture filter: %w", err)
	}
	return prog, nil
}

// acceptMark is the Skip of a placeholder jump meaning "matched: accept",
// replaced by linkAccept with the jump to the block's accept instruction.
const acceptMark = ^uint32(0)

// linkAccept replaces every placeholder jump (acceptMark) in prog with a
// jump to the instruction at index target.
func linkAccept(prog []bpf.Instruction, target int) []bpf.Instruction {
	for i, ins := range prog {
		if j, ok := ins.(bpf.Jump); ok && j.Skip == acceptMark {
			prog[i] = bpf.Jump{Skip: uint32(target - i - 1)}
		}
	}
	return prog
}

// side matches an IPv4 address word at absolute offset off and, when port
// is non-zero, the port at X+portOff (X = IPv4 header length).
func side(words []uint32, off uint32, port uint16, portOff uint32, accept bpf.Instruction) []bpf.Instruction {
	var out []bpf.Instruction
	n := 2*len(words) + 1 // loads+compares + accept
	if port != 0 {
		n += 2
	}
	for i, w := range words {
		out = append(out, bpf.LoadAbsolute{Off: off + uint32(4*i), Size: 4})
		pos := len(out) // index of the compare
		out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: w, SkipTrue: 0, SkipFalse: uint8(n - pos - 1)})
	}
	if port != 0 {
		out = append(out, bpf.LoadIndirect{Off: portOff, Size: 2})
		pos := len(out)
		out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipTrue: 0, SkipFalse: uint8(n - pos - 1)})
	}
	return append(out, accept)
}

// side6 is side for IPv6, whose TCP header is at the fixed offset 40.
func side6(words []uint32, off uint32, port uint16, portOff uint32, accept bpf.Instruction) []bpf.Instruction {
	var out []bpf.Instruction
	n := 2*len(words) + 1
	if port != 0 {
		n += 2
	}
	for i, w := range words {
		out = append(out, bpf.LoadAbsolute{Off: off + uint32(4*i), Size: 4})
		pos := len(out)
		out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: w, SkipTrue: 0, SkipFalse: uint8(n - pos - 1)})
	}
	if port != 0 {
		out = append(out, bpf.LoadAbsolute{Off: portOff, Size: 2})
		pos := len(out)
		out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipTrue: 0, SkipFalse: uint8(n - pos - 1)})
	}
	return append(out, accept)
}
