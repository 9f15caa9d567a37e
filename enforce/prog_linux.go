//go:build linux

package enforce

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The programs are written with cilium/ebpf's asm package, so building keepalive needs no C
// compiler. Both share one lookup (emitWalk): over the attached cgroup and its attached
// ancestors (ids built into the program when it is attached), most specific first, the
// first cgroup that holds a matching policy decides; within a cgroup a remote-port rule
// beats a local-port rule, which beats a prefix-only rule, which beats the cgroup's
// default. Rules are entries of one LPM trie whose key is
// cgroup id | kind | port | remote address (IPv4 as ::ffff:a.b.c.d), so a rule with a longer
// prefix wins within its kind. (bpf_sk_ancestor_cgroup_id, which would let one program find
// the socket's cgroup itself, is not available to sock_ops programs.)

// Layout of the maps' keys and values; the Go side (enforce_linux.go) encodes the same layout.
const (
	// Policy value (policyValue): flags, idle s, intvl s, cnt, user timeout ms.
	polFlags    = 0
	polIdle     = 4
	polIntvl    = 8
	polCnt      = 12
	polUT       = 16
	policyVSize = 32

	flagEnforce = 1 << 0 // rewrite the application's own setsockopt calls
	flagRule    = 1 << 1 // a port or prefix rule (not the cgroup's default)
	flagListen  = 1 << 2 // enforce mode also rewrites listening sockets' own setsockopt
	flagIdle    = 1 << 8
	flagIntvl   = 1 << 9
	flagCnt     = 1 << 10
	flagUT      = 1 << 11

	// Rule kinds in the key.
	kindAny    = 0
	kindLocal  = 1
	kindRemote = 2

	keySize      = 32 // u32 prefixlen + cgid u64 + kind u16 + port u16 + addr [16]
	keyFixedBits = 96 // cgid, kind and port: matched exactly

	// Counters (per-CPU values, u64 each).
	cntSeen      = 0
	cntSet       = 8
	cntRewritten = 16
	cntFail      = 24 // [numOpts]u64
	cntErrno     = 24 + 8*numOpts
	counterSize  = 24 + 16*numOpts

	// maxDepth bounds the depth of a cgroup below the cgroup2 root.
	maxDepth = 64
)

// The options the policy sets, in this order everywhere (counters, list output).
const (
	optKeepalive = iota
	optIdle
	optIntvl
	optCnt
	optUT
	numOpts
)

// optionNames name the options in counters and errors.
var optionNames = [numOpts]string{"keepalive", "idle", "interval", "count", "user-timeout"}

type optDesc struct {
	level, name int32
	field       int16  // offset in the policy value; -1: the constant 1
	flag        uint32 // bit in polFlags that says the field is set; 0: always
}

var opts = [numOpts]optDesc{
	{1, 9, -1, 0},             // SOL_SOCKET, SO_KEEPALIVE
	{6, 4, polIdle, flagIdle}, // SOL_TCP, TCP_KEEPIDLE
	{6, 5, polIntvl, flagIntvl},
	{6, 6, polCnt, flagCnt},
	{6, 18, polUT, flagUT}, // TCP_USER_TIMEOUT
}

// Stack layout (offsets from R10).
const (
	stKey    = -48 // the LPM key, 32 bytes
	stCgid   = -8  // u64 cgroup id for the counters lookup
	stOptval = -16 // u32 value for bpf_setsockopt
	stLPort  = -56 // u32 local port, host order
	stRPort  = -52 // u32 remote port, host order
	stState  = -60 // u32 socket state (cgroup/setsockopt)
)

// Registers kept across helper calls.
const (
	rCtx   = asm.R6
	rPol   = asm.R7 // policy value found
	rFlags = asm.R8 // bit 1: an option failed
	rCnt   = asm.R9 // counters of the cgroup being looked at
)

// v4mapped is bytes 8..11 of an IPv4-mapped IPv6 address (00 00 ff ff) as a native u32.
var v4mapped = int64(binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff}))

// chainLink is one cgroup of a program's chain: its id and which kinds of entries it holds, so
// that the program makes only the lookups that can hit.
type chainLink struct {
	id                           uint64
	remote, local, prefixOrDeflt bool
}

// chainOf returns the chain entry of a cgroup with these rules.
func chainOf(id uint64, rules []Rule) chainLink {
	l := chainLink{id: id}
	for _, r := range rules {
		switch {
		case r.Match.RemotePort != 0:
			l.remote = true
		case r.Match.LocalPort != 0:
			l.local = true
		default:
			l.prefixOrDeflt = true
		}
	}
	return l
}

// emitWalk appends the policy lookup for a program attached to chain[0], whose attached
// ancestors are chain[1:], nearest first. The first cgroup of the chain with a matching
// entry decides. On a match it jumps to "found" with rPol set; otherwise to "out". rCnt
// holds chain[0]'s counters throughout.
func emitWalk(policy, counters *ebpf.Map, chain []chainLink, countSeen bool) asm.Instructions {
	in := asm.Instructions{
		asm.LoadImm(asm.R1, int64(chain[0].id), asm.DWord),
		asm.StoreMem(asm.RFP, stCgid, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, counters.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stCgid),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(rCnt, asm.R0),
	}
	if countSeen {
		in = append(in, asm.Mov.Imm(asm.R1, 1), asm.AddAtomic.Mem(rCnt, asm.R1, asm.DWord, cntSeen))
	}
	for c, l := range chain {
		id := l.id
		next := fmt.Sprintf("c%d", c+1)
		if c == len(chain)-1 {
			next = "out"
		}
		in = append(in,
			asm.StoreImm(asm.RFP, stKey+4, int64(int32(uint32(id))), asm.Word).WithSymbol(fmt.Sprintf("c%d", c)),
			asm.StoreImm(asm.RFP, stKey+8, int64(int32(uint32(id>>32))), asm.Word),
		)
		for i, k := range []struct {
			kind int32
			port int16
			any  bool // any entry (rule or default) decides
			has  bool // the cgroup holds entries of this kind
		}{{kindRemote, stRPort, false, l.remote}, {kindLocal, stLPort, false, l.local}, {kindAny, 0, true, l.prefixOrDeflt}} {
			miss := fmt.Sprintf("miss%d_%d", c, i)
			hit := fmt.Sprintf("hit%d_%d", c, i)
			if !k.has {
				// Nothing of this kind: no lookup, just the label for the previous miss.
				if i < 2 {
					in = append(in, asm.Mov.Imm(asm.R1, 0).WithSymbol(miss))
				} else {
					in = append(in, asm.Ja.Label(next).WithSymbol(miss))
				}
				continue
			}
			in = append(in,
				asm.StoreImm(asm.RFP, stKey, keyFixedBits+128, asm.Word), // full-length key
				asm.StoreImm(asm.RFP, stKey+12, int64(k.kind), asm.Half))
			if k.port != 0 {
				in = append(in,
					asm.LoadMem(asm.R1, asm.RFP, k.port, asm.Word),
					asm.StoreMem(asm.RFP, stKey+14, asm.R1, asm.Half))
			} else {
				in = append(in, asm.StoreImm(asm.RFP, stKey+14, 0, asm.Half))
			}
			in = append(in,
				asm.LoadMapPtr(asm.R1, policy.FD()),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, stKey),
				asm.FnMapLookupElem.Call(),
				asm.JEq.Imm(asm.R0, 0, miss),
			)
			if !k.any {
				in = append(in,
					asm.LoadMem(asm.R1, asm.R0, polFlags, asm.Word),
					asm.JSet.Imm(asm.R1, flagRule, hit),
					asm.Ja.Label(miss),
					asm.Mov.Reg(rPol, asm.R0).WithSymbol(hit),
				)
			} else {
				in = append(in, asm.Mov.Reg(rPol, asm.R0))
			}
			in = append(in, asm.Ja.Label("found"))
			if i < 2 {
				in = append(in, asm.Mov.Imm(asm.R1, 0).WithSymbol(miss))
			} else {
				in = append(in, asm.Ja.Label(next).WithSymbol(miss))
			}
		}
	}
	return in
}

// storeAddr writes the 16-byte address at stKey+16 from four u32 loads of base+off (IPv6) or,
// for IPv4, ::ffff: and one u32 at base+off4. family is in R1 on entry.
func storeAddr(base asm.Register, off6, off4 int16, label string) asm.Instructions {
	return asm.Instructions{
		asm.JEq.Imm(asm.R1, 2, label+"_v4"), // AF_INET
		asm.LoadMem(asm.R1, base, off6, asm.Word),
		asm.StoreMem(asm.RFP, stKey+16, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, base, off6+4, asm.Word),
		asm.StoreMem(asm.RFP, stKey+20, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, base, off6+8, asm.Word),
		asm.StoreMem(asm.RFP, stKey+24, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, base, off6+12, asm.Word),
		asm.StoreMem(asm.RFP, stKey+28, asm.R1, asm.Word),
		asm.Ja.Label(label + "_done"),
		asm.StoreImm(asm.RFP, stKey+16, 0, asm.Word).WithSymbol(label + "_v4"),
		asm.StoreImm(asm.RFP, stKey+20, 0, asm.Word),
		asm.StoreImm(asm.RFP, stKey+24, v4mapped, asm.Word),
		asm.LoadMem(asm.R1, base, off4, asm.Word),
		asm.StoreMem(asm.RFP, stKey+28, asm.R1, asm.Word),
		asm.Mov.Imm(asm.R1, 0).WithSymbol(label + "_done"),
	}
}

// struct bpf_sock_ops offsets (include/uapi/linux/bpf.h).
const (
	soOp         = 0
	soFamily     = 20
	soRemoteIP4  = 24
	soRemoteIP6  = 32
	soRemotePort = 64 // network order in the upper 16 bits of the u32 (little endian)
	soLocalPort  = 68 // host order

	opActiveEstablished  = 4
	opPassiveEstablished = 5
)

// sockOpsProgram builds the BPF_PROG_TYPE_SOCK_OPS program: at active and passive
// establishment it finds the socket's policy and sets each option with bpf_setsockopt,
// counting successes and failures (with the errno) per option.
func sockOpsProgram(policy, counters *ebpf.Map, chain []chainLink) asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(rCtx, asm.R1),
		asm.Mov.Imm(rFlags, 0),
		asm.LoadMem(asm.R1, rCtx, soOp, asm.Word),
		asm.JEq.Imm(asm.R1, opActiveEstablished, "start"),
		asm.JEq.Imm(asm.R1, opPassiveEstablished, "start"),
		asm.Ja.Label("out"),
		asm.LoadMem(asm.R1, rCtx, soLocalPort, asm.Word).WithSymbol("start"),
		asm.StoreMem(asm.RFP, stLPort, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, rCtx, soRemotePort, asm.Word),
		asm.RSh.Imm(asm.R1, 16),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.StoreMem(asm.RFP, stRPort, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, rCtx, soFamily, asm.Word),
	}
	in = append(in, storeAddr(rCtx, soRemoteIP6, soRemoteIP4, "addr")...)
	in = append(in, emitWalk(policy, counters, chain, true)...)
	in = append(in, asm.Mov.Imm(asm.R1, 0).WithSymbol("found"))
	for i, o := range opts {
		skip := fmt.Sprintf("skip%d", i)
		if o.flag != 0 {
			in = append(in,
				asm.LoadMem(asm.R1, rPol, polFlags, asm.Word),
				asm.JSet.Imm(asm.R1, int32(o.flag), fmt.Sprintf("do%d", i)),
				asm.Ja.Label(skip),
				asm.LoadMem(asm.R1, rPol, o.field, asm.Word).WithSymbol(fmt.Sprintf("do%d", i)),
			)
		} else {
			in = append(in, asm.Mov.Imm(asm.R1, 1))
		}
		in = append(in,
			asm.StoreMem(asm.RFP, stOptval, asm.R1, asm.Word),
			asm.Mov.Reg(asm.R1, rCtx),
			asm.Mov.Imm(asm.R2, o.level),
			asm.Mov.Imm(asm.R3, o.name),
			asm.Mov.Reg(asm.R4, asm.RFP),
			asm.Add.Imm(asm.R4, stOptval),
			asm.Mov.Imm(asm.R5, 4),
			asm.FnSetsockopt.Call(),
			asm.JEq.Imm(asm.R0, 0, skip),
			asm.Neg.Imm(asm.R0, 0),
			asm.StoreMem(rCnt, int16(cntErrno+8*i), asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R1, 1),
			asm.AddAtomic.Mem(rCnt, asm.R1, asm.DWord, int16(cntFail+8*i)),
			asm.Or.Imm(rFlags, 2),
			asm.Mov.Imm(asm.R1, 0).WithSymbol(skip),
		)
	}
	in = append(in,
		asm.JSet.Imm(rFlags, 2, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(rCnt, asm.R1, asm.DWord, cntSet),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	)
	return in
}

// struct bpf_sockopt and struct bpf_sock offsets.
const (
	sxSk        = 0
	sxOptval    = 8
	sxOptvalEnd = 16
	sxLevel     = 24
	sxOptname   = 28
	sxOptlen    = 32

	bsFamily   = 4
	bsProtocol = 12
	bsSrcPort  = 44 // host order
	bsDstPort  = 48 // network order, 16 bits
	bsDstIP4   = 52
	bsDstIP6   = 56
	bsState    = 72

	ipprotoTCP   = 6
	ipprotoMPTCP = 262
	tcpListen    = 10
)

// setsockoptProgram builds the BPF_PROG_TYPE_CGROUP_SOCKOPT program for cgroup/setsockopt:
// when a TCP socket sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT or
// TCP_USER_TIMEOUT and its policy is in enforce mode, the value is rewritten in place to the
// policy's before the kernel sees it. UDP and other protocols pass untouched; a listening
// socket only when the policy asks for it (Rule.Listeners). MPTCP sockets are handled as
// TCP on purpose: the kernel copies these options of the MPTCP socket to its TCP subflows,
// so rewriting the MPTCP socket's call is what gives the subflows the policy. Everything else
// passes unchanged. The program always allows the call (returns 1).
func setsockoptProgram(policy, counters *ebpf.Map, chain []chainLink) asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(rCtx, asm.R1),
		asm.Mov.Imm(rFlags, 0),
		asm.LoadMem(asm.R2, rCtx, sxLevel, asm.Word),
		asm.LoadMem(asm.R3, rCtx, sxOptname, asm.Word),
		asm.JEq.Imm(asm.R2, 1, "sol_socket"),
		asm.JNE.Imm(asm.R2, 6, "out"),
		asm.JEq.Imm(asm.R3, 4, "ours"),
		asm.JEq.Imm(asm.R3, 5, "ours"),
		asm.JEq.Imm(asm.R3, 6, "ours"),
		asm.JEq.Imm(asm.R3, 18, "ours"),
		asm.Ja.Label("out"),
		asm.JNE.Imm(asm.R3, 9, "out").WithSymbol("sol_socket"),
		asm.LoadMem(asm.R1, rCtx, sxOptlen, asm.Word).WithSymbol("ours"),
		asm.JSLT.Imm32(asm.R1, 4, "out"),
		asm.LoadMem(asm.R1, rCtx, sxSk, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R2, asm.R1, bsProtocol, asm.Word),
		asm.JEq.Imm(asm.R2, ipprotoTCP, "tcp"),
		asm.JNE.Imm(asm.R2, ipprotoMPTCP, "out"),
		asm.LoadMem(asm.R2, asm.R1, bsState, asm.Word).WithSymbol("tcp"),
		asm.StoreMem(asm.RFP, stState, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R1, bsSrcPort, asm.Word),
		asm.StoreMem(asm.RFP, stLPort, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.R1, bsDstPort, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.StoreMem(asm.RFP, stRPort, asm.R2, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.LoadMem(asm.R1, asm.R2, bsFamily, asm.Word),
	}
	in = append(in, storeAddr(asm.R2, bsDstIP6, bsDstIP4, "addr")...)
	in = append(in, emitWalk(policy, counters, chain, false)...)
	in = append(in,
		asm.LoadMem(asm.R1, rPol, polFlags, asm.Word).WithSymbol("found"),
		asm.JSet.Imm(asm.R1, flagEnforce, "enforce"),
		asm.Ja.Label("out"),
		// A listening socket's own options only when the policy asks for it.
		asm.LoadMem(asm.R2, asm.RFP, stState, asm.Word).WithSymbol("enforce"),
		asm.JNE.Imm(asm.R2, tcpListen, "notlisten"),
		asm.JSet.Imm(asm.R1, flagListen, "notlisten"),
		asm.Ja.Label("out"),
		asm.LoadMem(asm.R2, rCtx, sxLevel, asm.Word).WithSymbol("notlisten"),
		asm.LoadMem(asm.R3, rCtx, sxOptname, asm.Word),
	)
	for i, o := range opts {
		nextOpt := fmt.Sprintf("notopt%d", i)
		in = append(in,
			asm.JNE.Imm(asm.R2, o.level, nextOpt),
			asm.JNE.Imm(asm.R3, o.name, nextOpt),
		)
		if o.flag != 0 {
			in = append(in,
				asm.JSet.Imm(asm.R1, int32(o.flag), fmt.Sprintf("val%d", i)),
				asm.Ja.Label("out"),
				asm.LoadMem(asm.R4, rPol, o.field, asm.Word).WithSymbol(fmt.Sprintf("val%d", i)),
			)
		} else {
			in = append(in, asm.Mov.Imm(asm.R4, 1))
		}
		in = append(in,
			asm.Ja.Label("write"),
			asm.Mov.Imm(asm.R5, 0).WithSymbol(nextOpt),
		)
	}
	in = append(in,
		asm.Ja.Label("out"),
		// R4 holds the value to write.
		asm.LoadMem(asm.R2, rCtx, sxOptval, asm.DWord).WithSymbol("write"),
		asm.LoadMem(asm.R3, rCtx, sxOptvalEnd, asm.DWord),
		asm.Mov.Reg(asm.R5, asm.R2),
		asm.Add.Imm(asm.R5, 4),
		asm.JGT.Reg(asm.R5, asm.R3, "out"),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.Word),
		asm.JEq.Reg(asm.R5, asm.R4, "out"), // already the policy's value
		asm.StoreMem(asm.R2, 0, asm.R4, asm.Word),
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(rCnt, asm.R1, asm.DWord, cntRewritten),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	)
	return in
}
