//go:build linux

package host

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func TestOwnersOf(t *testing.T) {
	nstest.Require(t)
	c, s := nstest.Loopback(t, "tcp4", "127.0.0.1:0")
	port := uint16(s.LocalAddr().(*net.TCPAddr).Port)
	all, err := List(context.Background(), ListOptions{Selector: Selector{Ports: []uint16{port}, States: []State{StateEstablished}}, NoInfo: true})
	if err != nil {
		t.Fatal(err)
	}
	mine := c.LocalAddr().(*net.TCPAddr).AddrPort()
	var socks []Socket
	for _, so := range all {
		if so.Local == mine || so.Remote == mine {
			socks = append(socks, so)
		}
	}
	if len(socks) < 2 {
		t.Fatalf("%d sockets listed, want the pair", len(socks))
	}
	var inodes []uint32
	for _, so := range socks {
		inodes = append(inodes, so.Inode)
	}
	inodes = append(inodes, 1) // no socket has inode 1: absent from the answer
	got := map[uint32][]Owner{}
	if err := OwnersOf(context.Background(), inodes, func(ino uint32, o []Owner) {
		got[ino] = append([]Owner(nil), o...)
	}); err != nil {
		t.Fatal(err)
	}
	for _, so := range socks {
		o := got[so.Inode]
		if len(o) != 1 || o[0].PID != os.Getpid() || o[0].FD <= 2 {
			t.Errorf("%s: owners %+v, want this process", so.String(), o)
		}
	}
	if _, ok := got[1]; ok {
		t.Error("inode 1 reported as owned")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := OwnersOf(ctx, inodes, func(uint32, []Owner) {}); err == nil {
		t.Error("cancelled context: no error")
	}
}
