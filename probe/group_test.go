package probe

import (
	"net/netip"
	"testing"

	"github.com/keepalive-dev/keepalive/host"
)

func TestGroupByNetNS(t *testing.T) {
	ap := netip.MustParseAddrPort
	est := func(ns, l, r string) host.Socket {
		return host.Socket{State: host.StateEstablished, NetNS: ns, Local: ap(l), Remote: ap(r)}
	}
	socks := []host.Socket{
		est("", "127.0.0.1:1000", "127.0.0.1:2000"),
		est("blue", "10.200.0.1:1000", "10.200.0.2:80"),
		est("", "127.0.0.1:1000", "127.0.0.1:2000"), // listed twice (a socket with two owners)
		{State: host.StateListen, Local: ap("127.0.0.1:2000")},
		est("", "127.0.0.1:3000", "127.0.0.1:2000"),
	}
	groups, skipped := GroupByNetNS(socks)
	if skipped != 1 || len(groups) != 2 || groups[0].NetNS != "" || groups[1].NetNS != "blue" {
		t.Fatalf("groups %+v, skipped %d", groups, skipped)
	}
	if len(groups[0].Flows) != 2 || len(groups[0].Sockets) != 2 || len(groups[1].Flows) != 1 {
		t.Fatalf("flows: %v and %v", groups[0].Flows, groups[1].Flows)
	}
	if s := groups[0].Sockets[groups[0].Flows[0]]; s.Local != ap("127.0.0.1:1000") {
		t.Fatalf("first flow keeps the first listed socket, got %v", s.Local)
	}
}
