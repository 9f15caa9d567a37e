//go:build linux

// Package natlab builds the middleboxes nattimeout is tested and benchmarked against:
// client ↔ router ↔ server namespaces, the router a conntrack NAT (silent or RST on expiry),
// an asymmetric firewall (nftables sets with per-direction timeouts) or a user-space proxy
// that closes connections idle of data. Everything is removed by t.Cleanup.
package natlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
	"github.com/vishvananda/netlink"
)

// Routed is client ↔ router ↔ server: the client 10.200.141.1 behind the router's
// 10.200.141.254, the server 10.200.142.2 behind its 10.200.142.254. The router's
// interfaces are "rc" (client side) and "rs" (server side).
type Routed struct {
	Client, Router, Server *nstest.NS
}

// Addresses of a Routed topology.
const (
	ClientIP     = "10.200.141.1"
	RouterClient = "10.200.141.254"
	RouterServer = "10.200.142.254"
	ServerIP     = "10.200.142.2"
	ServerPort   = 7414
	ProxyPort    = 7415
)

// New builds a Routed topology (namespaces named after prefix) with forwarding on.
func New(t testing.TB, prefix string) *Routed {
	t.Helper()
	nstest.Require(t)
	_, err := exec.LookPath("nft")
	nstest.Need(t, err == nil, "the nft command (package nftables)")
	r := &Routed{Client: nstest.NewNS(t, prefix+"c"), Router: nstest.NewNS(t, prefix+"r"), Server: nstest.NewNS(t, prefix+"s")}
	link(t, r.Client, "c0", ClientIP, r.Router, "rc", RouterClient)
	link(t, r.Server, "s0", ServerIP, r.Router, "rs", RouterServer)
	route(t, r.Client, "c0", RouterClient)
	route(t, r.Server, "s0", RouterServer)
	Sysctl(t, r.Router, "net/ipv4/ip_forward", "1")
	return r
}

func link(t testing.TB, a *nstest.NS, an, aip string, b *nstest.NS, bn, bip string) {
	t.Helper()
	a.Do(t, func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn, PeerNamespace: netlink.NsFd(int(b.Handle))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("veth %s/%s: %w", an, bn, err)
		}
		return addrUp(an, aip)
	})
	b.Do(t, func() error { return addrUp(bn, bip) })
}

func addrUp(name, ip string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func route(t testing.TB, ns *nstest.NS, dev, gw string) {
	t.Helper()
	ns.Do(t, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw).To4()})
	})
}

func Sysctl(t testing.TB, ns *nstest.NS, key, value string) {
	t.Helper()
	err := ns.Run(func() error { return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644) })
	if errors.Is(err, os.ErrNotExist) && strings.Contains(key, "conntrack") {
		nstest.Need(t, false, "connection tracking (nf_conntrack module): "+err.Error())
	}
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, ns.Name, err)
	}
}

// NFT loads a ruleset into the namespace with the nft command.
func NFT(t testing.TB, ns *nstest.NS, ruleset string) {
	t.Helper()
	err := ns.Run(func() error {
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft -f: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ConntrackNAT makes the router a masquerading NAT whose flows expire after timeout idle
// seconds; packets of forgotten flows are dropped (onExpiry "drop") or answered with an RST
// ("rst"). The value is set here only: the measurement does not know it.
func (r *Routed) ConntrackNAT(t testing.TB, timeout int, onExpiry string) {
	t.Helper()
	// Conntrack's sysctls appear in a namespace once the module is loaded.
	_ = exec.Command("modprobe", "-q", "nf_conntrack").Run()
	rules := `table inet nat14 {
	chain natpost { type nat hook postrouting priority srcnat; oifname "rs" masquerade; }
	chain natfwd { type filter hook forward priority filter; %s ct state invalid drop; }
	chain natin { type filter hook input priority filter; %s }
}`
	fwdRST, in := "", "ct state invalid drop;"
	if onExpiry == "rst" {
		fwdRST, in = "ct state invalid meta l4proto tcp reject with tcp reset;", ""
	}
	NFT(t, r.Router, fmt.Sprintf(rules, fwdRST, in))
	Sysctl(t, r.Router, "net/netfilter/nf_conntrack_tcp_loose", "0")
	Sysctl(t, r.Router, "net/netfilter/nf_conntrack_tcp_timeout_established", fmt.Sprint(timeout))
}

// Asymmetric makes the router forget a flow per direction: client→server packets pass for
// up seconds after the flow's last packet, server→client packets for down seconds (nftables
// sets keyed by the client's port, with per-set timeouts; silent drop).
func (r *Routed) Asymmetric(t testing.TB, up, down int) {
	t.Helper()
	NFT(t, r.Router, fmt.Sprintf(`table inet nat14 {
	set upset { type inet_service; flags dynamic,timeout; timeout %ds; }
	set downset { type inet_service; flags dynamic,timeout; timeout %ds; }
	chain natfwd { type filter hook forward priority filter;
		meta l4proto != tcp accept
		iifname "rc" tcp flags & syn == syn update @upset { tcp sport } update @downset { tcp sport } accept
		iifname "rs" tcp flags & syn == syn update @upset { tcp dport } update @downset { tcp dport } accept
		iifname "rc" tcp sport != @upset drop
		iifname "rs" tcp dport != @downset drop
		iifname "rc" update @upset { tcp sport } update @downset { tcp sport }
		iifname "rs" update @upset { tcp dport } update @downset { tcp dport }
	}
}`, up, down))
}

// Proxy listens on the router's client-side address and relays to target, closing both
// sides of a pair once no data has passed for idle.
func (r *Routed) Proxy(t testing.TB, target string, idle time.Duration) string {
	t.Helper()
	var ln net.Listener
	r.Router.Do(t, func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", RouterClient+":"+fmt.Sprint(ProxyPort))
		return err
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10000; i++ {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			var out net.Conn
			err = r.Router.Run(func() error {
				d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
				var err error
				out, err = d.Dial("tcp", target)
				return err
			})
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			open = append(open, in, out)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				relayIdle(in, out, idle)
			}()
		}
	}()
	return RouterClient + ":" + fmt.Sprint(ProxyPort)
}

// relayIdle copies both ways and closes both connections when no data has moved for idle.
func relayIdle(a, b net.Conn, idle time.Duration) {
	var mu sync.Mutex
	last := time.Now()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 512)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				mu.Lock()
				last = time.Now()
				mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				if err != io.EOF {
					break
				}
				break
			}
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-done:
			a.Close()
			b.Close()
			<-done
			return
		case <-tk.C:
			mu.Lock()
			expired := time.Since(last) >= idle
			mu.Unlock()
			if expired {
				a.Close()
				b.Close()
				<-done
				<-done
				return
			}
		}
	}
}
