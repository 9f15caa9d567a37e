// Package wiretest builds packets for the tests of the prober's wire code (probe and
// internal/probewire): what a router sends back, which the prober never builds itself.
package wiretest

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ICMPUnreachable wraps quoted (an IP header and the start of a TCP segment) in an ICMP or
// ICMPv6 destination unreachable from a router at 10.200.1.254 / fd00:200::fe.
func ICMPUnreachable(t testing.TB, quoted []byte, v6 bool) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if !v6 {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: []byte{10, 200, 1, 254}, DstIP: []byte{10, 200, 1, 1}}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeHost)}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(quoted))
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: netip.MustParseAddr("fd00:200::fe").AsSlice(), DstIP: netip.MustParseAddr("fd00:200::1").AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeAddressUnreachable)}
		if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, ip, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, quoted...)))
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
