package probewire

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/keepalive-dev/keepalive/internal/probewire/wiretest"
)

var (
	tLocal  = netip.MustParseAddrPort("10.200.1.1:40000")
	tRemote = netip.MustParseAddrPort("10.200.1.2:80")
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	enc, dec := NewEncoder(), NewDecoder()
	for _, p := range []Packet{
		{Src: tLocal, Dst: tRemote, Seq: 999, Ack: 5000, Window: 502},
		{Src: tLocal, Dst: tRemote, Seq: 999, Ack: 5000, Window: 502, Payload: []byte{0}},
		{Src: netip.MustParseAddrPort("[fd00:200::1]:40000"), Dst: netip.MustParseAddrPort("[fd00:200::2]:80"), Seq: 1<<32 - 1, Ack: 0, Window: 65535},
		{Src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2"), Seq: 1, Ack: 2},
	} {
		b, err := enc.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		// Checksums as the kernel would verify them.
		pkt := gopacket.NewPacket(b, map[bool]gopacket.LayerType{true: layers.LayerTypeIPv4, false: layers.LayerTypeIPv6}[p.Src.Addr().Unmap().Is4()], gopacket.Default)
		if el := pkt.ErrorLayer(); el != nil {
			t.Fatalf("decode: %v", el.Error())
		}
		tcp := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		want := tcp.Checksum
		if err := tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, tcp, gopacket.Payload(tcp.Payload)); err != nil {
			t.Fatal(err)
		}
		if got := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP).Checksum; got != want || want == 0 {
			t.Errorf("checksum %x want %x", got, want)
		}
		w, ok := dec.Decode(b)
		if !ok {
			t.Fatalf("decode %x", b)
		}
		if w.Src != plain(p.Src) || w.Dst != plain(p.Dst) || w.Seq != p.Seq || w.Ack != p.Ack || w.Flags != FlagACK || w.Len != len(p.Payload) || w.Window != p.Window {
			t.Errorf("round trip %+v -> %+v", p, w)
		}
	}
	if _, err := enc.Encode(Packet{Src: tLocal, Dst: netip.MustParseAddrPort("[::1]:1")}); err == nil {
		t.Error("mixed families encoded")
	}
}

// plain is a with its address unmapped and without zone, as decoded.
func plain(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}

func TestDecodeICMP(t *testing.T) {
	enc, dec := NewEncoder(), NewDecoder()
	for _, v6 := range []bool{false, true} {
		p := Packet{Src: tLocal, Dst: tRemote, Seq: 77, Ack: 5}
		if v6 {
			p.Src, p.Dst = netip.MustParseAddrPort("[fd00:200::1]:40000"), netip.MustParseAddrPort("[fd00:200::2]:80")
		}
		b, err := enc.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		quoted := append([]byte(nil), b...)
		if !v6 {
			quoted = quoted[:28] // IPv4 header + 8 bytes, the RFC 792 minimum
		}
		w, ok := dec.Decode(wiretest.ICMPUnreachable(t, quoted, v6))
		if !ok || !w.ICMP || w.Src != p.Src || w.Dst != p.Dst || w.Seq != 77 {
			t.Fatalf("v6=%v: %+v %v", v6, w, ok)
		}
		t.Logf("%s from %v", w.Reason, w.From)
	}
}

func TestDecodeRejects(t *testing.T) {
	dec := NewDecoder()
	for _, b := range [][]byte{nil, {0x45}, {0x60, 0, 0}, make([]byte, 60), {0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}} {
		if w, ok := dec.Decode(b); ok {
			t.Errorf("%x decoded as %+v", b, w)
		}
	}
}

func FuzzDecode(f *testing.F) {
	enc := NewEncoder()
	for _, p := range []Packet{
		{Src: tLocal, Dst: tRemote, Seq: 1, Ack: 2, Payload: []byte{0}},
		{Src: netip.MustParseAddrPort("[fd00:200::1]:1"), Dst: netip.MustParseAddrPort("[fd00:200::2]:2")},
	} {
		b, _ := enc.Encode(p)
		f.Add(append([]byte(nil), b...))
		f.Add(wiretest.ICMPUnreachable(f, b, p.Src.Addr().Is6()))
	}
	f.Add([]byte{0x45, 0, 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, ok := NewDecoder().Decode(b)
		if ok && (!w.Src.IsValid() || !w.Dst.IsValid()) {
			t.Fatalf("accepted without addresses: %+v", w)
		}
	})
}
