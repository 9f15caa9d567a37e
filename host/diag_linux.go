//go:build linux

package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Netlink and inet_diag wire layout (include/uapi/linux/inet_diag.h).
const (
	nlmsgHdrLen     = 16
	diagReqLen      = 56 // struct inet_diag_req_v2
	diagMsgLen      = 72 // struct inet_diag_msg
	inetDiagInfo    = 2  // INET_DIAG_INFO attribute
	diagRecvBufSize = 64 << 10
	// tcp_info field offsets (include/uapi/linux/tcp.h).
	tiRetransmits   = 2
	tiProbes        = 3
	tiBackoff       = 4
	tiRTO           = 8
	tiUnacked       = 24
	tiLastDataSent  = 44
	tiLastDataRecv  = 52
	tiLastAckRecv   = 56
	tiRTT           = 68
	tiRTTVar        = 72
	tiTotalRetrans  = 100
	tiBytesAcked    = 120
	tiBytesReceived = 128
	tiNotSent       = 144
)

var ne = binary.NativeEndian

// diagConn is a NETLINK_SOCK_DIAG socket bound to one network namespace.
type diagConn struct {
	fd  int
	seq uint32
	buf []byte
}

func openDiag(netns *NetNS) (*diagConn, error) {
	var fd int
	err := inNetNS(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return fmt.Errorf("host: open NETLINK_SOCK_DIAG socket: %w", os.NewSyscallError("socket", err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &diagConn{fd: fd, buf: make([]byte, diagRecvBufSize)}, nil
}

func (c *diagConn) close() { unix.Close(c.fd) }

// diagID is struct inet_diag_sockid in its wire form.
type diagID [48]byte

func idOf(s *Socket) (id diagID) {
	binary.BigEndian.PutUint16(id[0:2], s.Local.Port())
	binary.BigEndian.PutUint16(id[2:4], s.Remote.Port())
	put := func(dst []byte, a netip.Addr) {
		if s.Family == unix.AF_INET {
			b := a.As4()
			copy(dst, b[:])
		} else {
			b := a.As16() // a v4 address becomes v4-mapped, as the kernel keeps it
			copy(dst, b[:])
		}
	}
	put(id[4:20], s.Local.Addr())
	put(id[20:36], s.Remote.Addr())
	ne.PutUint32(id[36:40], s.Interface)
	ne.PutUint32(id[40:44], uint32(s.Cookie))
	ne.PutUint32(id[44:48], uint32(s.Cookie>>32))
	return id
}

// send writes one inet_diag_req_v2 request.
func (c *diagConn) send(typ uint16, flags uint16, family uint8, states uint32, ext uint8, id *diagID) error {
	var msg [nlmsgHdrLen + diagReqLen]byte
	c.seq++
	ne.PutUint32(msg[0:4], uint32(len(msg)))
	ne.PutUint16(msg[4:6], typ)
	ne.PutUint16(msg[6:8], flags)
	ne.PutUint32(msg[8:12], c.seq)
	r := msg[nlmsgHdrLen:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	r[2] = ext
	ne.PutUint32(r[4:8], states)
	if id != nil {
		copy(r[8:56], id[:])
	}
	for {
		err := unix.Sendto(c.fd, msg[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("sendto", err)
		}
		return nil
	}
}

// receive reads replies and calls fn for each inet_diag_msg until NLMSG_DONE (dumps) or the
// first message (single requests, dump false). An NLMSG_ERROR reply returns its errno
// (0 = plain ACK, returned as nil).
func (c *diagConn) receive(dump bool, fn func(m []byte) error) error {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		done, err := parseBatch(c.buf[:n], c.seq, dump, fn)
		if done || err != nil {
			return err
		}
	}
}

// parseBatch walks the netlink messages of one datagram. done is true when the reply is
// complete (NLMSG_DONE, NLMSG_ERROR, or the first answer to a non-dump request).
func parseBatch(b []byte, seq uint32, dump bool, fn func(m []byte) error) (done bool, err error) {
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:4]))
		typ := ne.Uint16(b[4:6])
		mseq := ne.Uint32(b[8:12])
		if l < nlmsgHdrLen || l > len(b) {
			return true, fmt.Errorf("host: malformed netlink message (length %d of %d)", l, len(b))
		}
		msg := b[nlmsgHdrLen:l]
		b = b[min(len(b), (l+3)&^3):]
		if mseq != seq {
			continue // stale reply of an earlier, interrupted request
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return true, errors.New("host: short netlink error message")
			}
			if e := int32(ne.Uint32(msg[0:4])); e != 0 {
				return true, unix.Errno(-e)
			}
			return true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
			if err := fn(msg); err != nil {
				return true, err
			}
			if !dump {
				return true, nil
			}
		}
	}
	return false, nil
}

// parseHeader fills the inet_diag_msg fields of s (not Info). ok is false for a short message.
func parseHeader(m []byte, s *Socket) bool {
	if len(m) < diagMsgLen {
		return false
	}
	s.Family = int(m[0])
	s.State = State(m[1])
	s.Timer = Timer(m[2])
	s.TimerRetrans = int(m[3])
	id := m[4:52]
	lp := binary.BigEndian.Uint16(id[0:2])
	rp := binary.BigEndian.Uint16(id[2:4])
	var la, ra netip.Addr
	if s.Family == unix.AF_INET {
		la = netip.AddrFrom4([4]byte(id[4:8]))
		ra = netip.AddrFrom4([4]byte(id[20:24]))
	} else {
		la = netip.AddrFrom16([16]byte(id[4:20])).Unmap()
		ra = netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	}
	s.Local = netip.AddrPortFrom(la, lp)
	s.Remote = netip.AddrPortFrom(ra, rp)
	s.Interface = ne.Uint32(id[36:40])
	s.Cookie = uint64(ne.Uint32(id[40:44])) | uint64(ne.Uint32(id[44:48]))<<32
	s.TimerExpires = time.Duration(ne.Uint32(m[52:56])) * time.Millisecond
	s.RecvQ = ne.Uint32(m[56:60])
	s.SendQ = ne.Uint32(m[60:64])
	s.UID = ne.Uint32(m[64:68])
	s.Inode = ne.Uint32(m[68:72])
	if s.Timer == TimerNone {
		s.TimerExpires = 0
	}
	return true
}

// parseInfo finds INET_DIAG_INFO in the attributes after the header and decodes it into ti.
func parseInfo(m []byte, ti *TCPInfo) bool {
	a := m[diagMsgLen:]
	for len(a) >= 4 {
		l := int(ne.Uint16(a[0:2]))
		typ := ne.Uint16(a[2:4])
		if l < 4 || l > len(a) {
			return false
		}
		if typ == inetDiagInfo {
			decodeTCPInfo(a[4:l], ti)
			return true
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return false
}

func decodeTCPInfo(b []byte, ti *TCPInfo) {
	*ti = TCPInfo{}
	u32 := func(off int) uint32 {
		if off+4 > len(b) {
			return 0
		}
		return ne.Uint32(b[off : off+4])
	}
	u64 := func(off int) uint64 {
		if off+8 > len(b) {
			return 0
		}
		return ne.Uint64(b[off : off+8])
	}
	if len(b) > tiBackoff {
		ti.Retransmits = b[tiRetransmits]
		ti.Probes = b[tiProbes]
		ti.Backoff = b[tiBackoff]
	}
	ti.RTO = time.Duration(u32(tiRTO)) * time.Microsecond
	ti.Unacked = u32(tiUnacked)
	ti.LastDataSent = time.Duration(u32(tiLastDataSent)) * time.Millisecond
	ti.LastDataRecv = time.Duration(u32(tiLastDataRecv)) * time.Millisecond
	ti.LastAckRecv = time.Duration(u32(tiLastAckRecv)) * time.Millisecond
	ti.RTT = time.Duration(u32(tiRTT)) * time.Microsecond
	ti.RTTVar = time.Duration(u32(tiRTTVar)) * time.Microsecond
	ti.TotalRetrans = u32(tiTotalRetrans)
	ti.BytesAcked = u64(tiBytesAcked)
	ti.BytesReceived = u64(tiBytesReceived)
	ti.NotSent = u32(tiNotSent)
}
