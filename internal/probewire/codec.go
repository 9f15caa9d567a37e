package probewire

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Encoder serializes [Packet]s into IPv4/IPv6 + TCP datagrams with correct
// lengths and checksums. It reuses its buffer: the returned slice is valid
// until the next call. Not safe for concurrent use.
type Encoder struct {
	buf gopacket.SerializeBuffer
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder { return &Encoder{buf: gopacket.NewSerializeBuffer()} }

// Encode returns the IP datagram (network header first) carrying p.
func (e *Encoder) Encode(p Packet) ([]byte, error) {
	src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("encode %v -> %v: addresses must be valid and of one family", p.Src, p.Dst)
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(p.Src.Port()),
		DstPort: layers.TCPPort(p.Dst.Port()),
		Seq:     p.Seq,
		Ack:     p.Ack,
		ACK:     true,
		Window:  p.Window,
	}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		ip4 := &layers.IPv4{
			Version: 4, TTL: 64, Flags: layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    src.AsSlice(), DstIP: dst.AsSlice(),
		}
		if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
			return nil, err
		}
		ip = ip4
	} else {
		ip6 := &layers.IPv6{
			Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
		}
		if err := tcp.SetNetworkLayerForChecksum(ip6); err != nil {
			return nil, err
		}
		ip = ip6
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(e.buf, opts, ip, tcp, gopacket.Payload(p.Payload)); err != nil {
		return nil, fmt.Errorf("encode %v -> %v: %w", p.Src, p.Dst, err)
	}
	return e.buf.Bytes(), nil
}

// Decoder parses captured IP datagrams. Not safe for concurrent use.
type Decoder struct {
	ip4  layers.IPv4
	ip6  layers.IPv6
	tcp  layers.TCP
	icmp layers.ICMPv4
	ic6  layers.ICMPv6
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// Decode parses b, an IP datagram starting at the network header. It
// returns false for anything but a TCP segment or an ICMP/ICMPv6
// destination unreachable quoting a TCP segment. It never panics.
func (d *Decoder) Decode(b []byte) (Wire, bool) {
	if len(b) < 1 {
		return Wire{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if err := d.ip4.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			return Wire{}, false
		}
		if d.ip4.FragOffset != 0 || d.ip4.Flags&layers.IPv4MoreFragments != 0 {
			return Wire{}, false
		}
		src, ok1 := netip.AddrFromSlice(d.ip4.SrcIP)
		dst, ok2 := netip.AddrFromSlice(d.ip4.DstIP)
		if !ok1 || !ok2 {
			return Wire{}, false
		}
		switch d.ip4.Protocol {
		case layers.IPProtocolTCP:
			// Captures are truncated: the payload length comes from the header.
			return d.decodeTCP(src.Unmap(), dst.Unmap(), d.ip4.Payload, int(d.ip4.Length)-int(d.ip4.IHL)*4)
		case layers.IPProtocolICMPv4:
			if err := d.icmp.DecodeFromBytes(d.ip4.Payload, gopacket.NilDecodeFeedback); err != nil {
				return Wire{}, false
			}
			if d.icmp.TypeCode.Type() != layers.ICMPv4TypeDestinationUnreachable {
				return Wire{}, false
			}
			w, ok := quoted(d.icmp.Payload)
			if !ok {
				return Wire{}, false
			}
			w.ICMP, w.From = true, src.Unmap()
			w.Reason = "ICMP " + icmp4Reason(d.icmp.TypeCode.Code())
			return w, true
		}
	case 6:
		if err := d.ip6.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			return Wire{}, false
		}
		src, ok1 := netip.AddrFromSlice(d.ip6.SrcIP)
		dst, ok2 := netip.AddrFromSlice(d.ip6.DstIP)
		if !ok1 || !ok2 {
			return Wire{}, false
		}
		switch d.ip6.NextHeader {
		case layers.IPProtocolTCP:
			return d.decodeTCP(src, dst, d.ip6.Payload, int(d.ip6.Length))
		case layers.IPProtocolICMPv6:
			if err := d.ic6.DecodeFromBytes(d.ip6.Payload, gopacket.NilDecodeFeedback); err != nil {
				return Wire{}, false
			}
			if d.ic6.TypeCode.Type() != layers.ICMPv6TypeDestinationUnreachable {
				return Wire{}, false
			}
			// The ICMPv6 error body starts with 4 unused bytes.
			if len(d.ic6.Payload) < 4 {
				return Wire{}, false
			}
			w, ok := quoted(d.ic6.Payload[4:])
			if !ok {
				return Wire{}, false
			}
			w.ICMP, w.From = true, src
			w.Reason = "ICMPv6 " + icmp6Reason(d.ic6.TypeCode.Code())
			return w, true
		}
	}
	return Wire{}, false
}

func (d *Decoder) decodeTCP(src, dst netip.Addr, b []byte, segLen int) (Wire, bool) {
	if err := d.tcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return Wire{}, false
	}
	payload := segLen - int(d.tcp.DataOffset)*4
	if payload < len(d.tcp.Payload) || payload > 65535 {
		payload = len(d.tcp.Payload)
	}
	t := &d.tcp
	var f uint8
	for _, x := range []struct {
		on  bool
		bit uint8
	}{{t.FIN, FlagFIN}, {t.SYN, FlagSYN}, {t.RST, FlagRST}, {t.PSH, FlagPSH}, {t.ACK, FlagACK}} {
		if x.on {
			f |= x.bit
		}
	}
	return Wire{
		Src:    netip.AddrPortFrom(src, uint16(t.SrcPort)),
		Dst:    netip.AddrPortFrom(dst, uint16(t.DstPort)),
		Seq:    t.Seq,
		Ack:    t.Ack,
		Flags:  f,
		Window: t.Window,
		Len:    payload,
	}, true
}

// quoted parses the IP header and the first 8 bytes of TCP quoted in an ICMP
// error (only the ports and the sequence number are guaranteed there).
func quoted(b []byte) (Wire, bool) {
	if len(b) < 1 {
		return Wire{}, false
	}
	var src, dst netip.Addr
	var rest []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return Wire{}, false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl+8 || b[9] != byte(layers.IPProtocolTCP) {
			return Wire{}, false
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		rest = b[ihl:]
	case 6:
		if len(b) < 48 || b[6] != byte(layers.IPProtocolTCP) {
			return Wire{}, false
		}
		src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		dst = netip.AddrFrom16([16]byte(b[24:40])).Unmap()
		rest = b[40:]
	default:
		return Wire{}, false
	}
	return Wire{
		Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[0:2])),
		Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[2:4])),
		Seq: binary.BigEndian.Uint32(rest[4:8]),
	}, true
}

func icmp4Reason(code uint8) string {
	switch code {
	case layers.ICMPv4CodeNet:
		return "net unreachable"
	case layers.ICMPv4CodeHost:
		return "host unreachable"
	case layers.ICMPv4CodeProtocol:
		return "protocol unreachable"
	case layers.ICMPv4CodePort:
		return "port unreachable"
	case layers.ICMPv4CodeFragmentationNeeded:
		return "fragmentation needed"
	case layers.ICMPv4CodeNetAdminProhibited, layers.ICMPv4CodeHostAdminProhibited, layers.ICMPv4CodeCommAdminProhibited:
		return "administratively prohibited"
	}
	return fmt.Sprintf("destination unreachable (code %d)", code)
}

func icmp6Reason(code uint8) string {
	switch code {
	case layers.ICMPv6CodeNoRouteToDst:
		return "no route to destination"
	case layers.ICMPv6CodeAdminProhibited:
		return "administratively prohibited"
	case layers.ICMPv6CodeAddressUnreachable:
		return "address unreachable"
	case layers.ICMPv6CodePortUnreachable:
		return "port unreachable"
	}
	return fmt.Sprintf("destination unreachable (code %d)", code)
}
