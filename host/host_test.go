package host

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func TestSocketJSONRoundTrip(t *testing.T) {
	in := Socket{Family: 2, Local: netip.MustParseAddrPort("10.0.0.1:5000"), Remote: netip.MustParseAddrPort("10.0.0.2:80"),
		State: StateCloseWait, Timer: TimerKeepalive, TimerExpires: 3 * time.Second, Cookie: 9, Inode: 7,
		Info: &TCPInfo{LastDataRecv: 5 * time.Second, LastAckRecv: 4 * time.Second}, Owners: []Owner{{PID: 1, Comm: "init", FD: 3}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Socket
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if out.String() != in.String() || out.Timer != in.Timer || out.Idle() != 4*time.Second || out.Owners[0] != in.Owners[0] {
		t.Fatalf("round trip: %+v from %s", out, b)
	}
}

func TestSelectorMatch(t *testing.T) {
	s := Socket{Local: netip.MustParseAddrPort("10.0.0.1:5000"), Remote: netip.MustParseAddrPort("192.0.2.7:443"), State: StateEstablished,
		Info: &TCPInfo{LastDataRecv: time.Minute, LastAckRecv: time.Minute}, Owners: []Owner{{PID: 10, Comm: "nginx"}, {PID: 11, Comm: "nginx"}}}
	for _, tc := range []struct {
		sel  Selector
		want bool
	}{
		{Selector{}, true},
		{Selector{Ports: []uint16{443}}, true},
		{Selector{Ports: []uint16{5000, 1}}, true},
		{Selector{Ports: []uint16{80}}, false},
		{Selector{Peers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, true},
		{Selector{Peers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, false},
		{Selector{PIDs: []int{11}}, true},
		{Selector{PIDs: []int{12}}, false},
		{Selector{Comms: []string{"nginx"}, Ports: []uint16{443}}, true},
		{Selector{Comms: []string{"redis"}}, false},
		{Selector{States: []State{StateListen}}, false},
		{Selector{IdleOver: 30 * time.Second}, true},
		{Selector{IdleOver: 2 * time.Minute}, false},
	} {
		if got := tc.sel.Match(&s); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.sel, got, tc.want)
		}
	}
	if m := (&Selector{}).StateMask(); m&(1<<StateListen) != 0 || m&(1<<StateEstablished) == 0 || m&(1<<StateTimeWait) != 0 {
		t.Errorf("default state mask %#x", m)
	}
}
