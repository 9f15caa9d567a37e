//go:build linux

package host

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// diagSeed builds one netlink datagram: a SOCK_DIAG_BY_FAMILY message with tcp_info of
// infoLen bytes, followed by NLMSG_DONE.
func diagSeed(seq uint32, infoLen int) []byte {
	msg := make([]byte, diagMsgLen+4+infoLen)
	msg[0], msg[1], msg[2], msg[3] = unix.AF_INET, byte(StateEstablished), byte(TimerKeepalive), 1
	binary.BigEndian.PutUint16(msg[4:6], 5000)
	binary.BigEndian.PutUint16(msg[6:8], 80)
	copy(msg[8:12], []byte{10, 200, 0, 1})
	copy(msg[24:28], []byte{10, 200, 0, 2})
	ne.PutUint32(msg[44:48], 77) // cookie
	ne.PutUint32(msg[52:56], 1500)
	ne.PutUint32(msg[68:72], 12345)
	ne.PutUint16(msg[diagMsgLen:], uint16(4+infoLen))
	ne.PutUint16(msg[diagMsgLen+2:], inetDiagInfo)
	info := msg[diagMsgLen+4:]
	if len(info) > tiLastAckRecv+4 {
		ne.PutUint32(info[tiLastDataRecv:], 4000)
		ne.PutUint32(info[tiLastAckRecv:], 3000)
	}
	var out []byte
	add := func(typ uint16, body []byte) {
		h := make([]byte, nlmsgHdrLen)
		ne.PutUint32(h[0:4], uint32(nlmsgHdrLen+len(body)))
		ne.PutUint16(h[4:6], typ)
		ne.PutUint32(h[8:12], seq)
		out = append(out, h...)
		out = append(out, body...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	add(unix.SOCK_DIAG_BY_FAMILY, msg)
	add(unix.NLMSG_DONE, make([]byte, 4))
	return out
}

func TestParseBatchSeed(t *testing.T) {
	var got []Socket
	done, err := parseBatch(diagSeed(1, 232), 1, true, func(m []byte) error {
		var s Socket
		var ti TCPInfo
		if !parseHeader(m, &s) || !parseInfo(m, &ti) {
			t.Fatal("seed message did not parse")
		}
		s.Info = &ti
		got = append(got, s)
		return nil
	})
	if !done || err != nil || len(got) != 1 {
		t.Fatalf("done %v err %v got %d", done, err, len(got))
	}
	s := got[0]
	if s.String() != "10.200.0.1:5000 -> 10.200.0.2:80 ESTAB" || s.Cookie != 77 || s.Inode != 12345 ||
		s.TimerExpires.Milliseconds() != 1500 || s.Idle().Milliseconds() != 3000 {
		t.Fatalf("parsed %+v", s)
	}
	if on, known := s.KeepaliveArmed(); !on || !known {
		t.Fatal("keepalive timer not recognised")
	}
}

func FuzzParseDiag(f *testing.F) {
	f.Add(diagSeed(1, 232))
	f.Add(diagSeed(1, 40))
	f.Add(diagSeed(2, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseBatch(b, 1, true, func(m []byte) error {
			var s Socket
			var ti TCPInfo
			if parseHeader(m, &s) {
				if parseInfo(m, &ti) {
					s.Info = &ti
				}
				_ = s.String()
				_ = s.Idle()
				id := idOf(&s)
				_ = id
			}
			return nil
		})
	})
}
