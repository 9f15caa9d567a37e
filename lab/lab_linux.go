//go:build linux

package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Interface names inside the namespaces (each namespace has its own name space, so they
// are the same in every run).
const (
	ifClient       = Prefix + "-c"  // client's end
	ifServer       = Prefix + "-s"  // server's end
	ifRouterClient = Prefix + "-rc" // router's end towards the client
	ifRouterServer = Prefix + "-rs" // router's end towards the server
	serverPort     = 7777
	greeting       = "hello\n"
	pollEvery      = 20 * time.Millisecond
	progressEvery  = 250 * time.Millisecond
)

// addrPlan is the addressing of one run.
type addrPlan struct {
	client, server, routerClient, routerServer netip.Prefix
}

func planFor(ipv6, routed bool) addrPlan {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	switch {
	case !ipv6 && !routed:
		return addrPlan{client: p("10.200.1.1/24"), server: p("10.200.1.2/24")}
	case !ipv6:
		return addrPlan{client: p("10.200.1.1/24"), routerClient: p("10.200.1.254/24"),
			routerServer: p("10.200.2.254/24"), server: p("10.200.2.2/24")}
	case !routed:
		return addrPlan{client: p("fd00:200::1/64"), server: p("fd00:200::2/64")}
	}
	return addrPlan{client: p("fd00:200::1/64"), routerClient: p("fd00:200::fe/64"),
		routerServer: p("fd00:200:0:2::fe/64"), server: p("fd00:200:0:2::2/64")}
}

// routed reports whether scenario s needs the router topology.
func routed(s Scenario) bool {
	sd, ok := lookupScenario(s)
	return ok && sd.routed()
}

// nsName is the name of a run's namespace: kalab-<pid>-<runid>-<role>.
func nsName(pid int, runID, role string) string {
	return fmt.Sprintf("%s-%d-%s-%s", Prefix, pid, runID, role)
}

func randomID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return strconv.FormatInt(time.Now().UnixNano()%0xffffff, 16)
	}
	return hex.EncodeToString(b)
}

// run is the state of one lab run; teardown undoes everything it created.
type run struct {
	o      Options
	plan   addrPlan
	names  []string
	hs     []netns.NsHandle
	client netns.NsHandle
	server netns.NsHandle
	router netns.NsHandle

	helper    *exec.Cmd
	helperIn  io.WriteCloser
	helperOut *bufio.Scanner
	helperErr *strings.Builder
	conn      *net.TCPConn
	stop      func()
	undoDial  func() // a dialWrapper detector's (enforce)
}

// Run builds the topology for o, runs the scenario with the detector and measures it, then
// removes everything it created (also on error, panic and when ctx is cancelled). The error
// is non-nil only when the lab itself failed; a detection that did not happen is a Result.
func Run(ctx context.Context, o Options) (res Result, err error) {
	o, err = o.normalize()
	if err != nil {
		return Result{}, err
	}
	if err := preflight(); err != nil {
		return Result{}, err
	}
	if o.RunID == "" {
		o.RunID = randomID()
	}
	if o.HelperPath == "" {
		o.HelperPath = "/proc/self/exe"
	}
	o = withHZ(ctx, o)
	pred := o.Detector.Predict(predictInput(o))
	if o.Max == 0 {
		o.Max = autoMax(o, pred)
		pred = o.Detector.Predict(predictInput(o)) // some predictions run up to the bound
	}
	r := &run{o: o, plan: planFor(o.IPv6, routed(o.Scenario)),
		client: netns.None(), server: netns.None(), router: netns.None()}
	defer func() {
		if terr := r.teardown(); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	if err := r.build(ctx); err != nil {
		return Result{}, err
	}
	return r.measure(ctx, pred)
}

func (r *run) newNS(role string) (netns.NsHandle, error) {
	name := nsName(os.Getpid(), r.o.RunID, role)
	h, err := newNamedNS(name)
	if err != nil {
		return netns.None(), err
	}
	r.names = append(r.names, name)
	r.hs = append(r.hs, h)
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return h, fmt.Errorf("lab: netlink in %s: %w", name, err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return h, fmt.Errorf("lab: lo in %s: %w", name, err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return h, fmt.Errorf("lab: lo up in %s: %w", name, err)
	}
	if r.o.IPv6 {
		for _, k := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
			if err := writeSysctl(h, k, "0"); err != nil {
				return h, err
			}
		}
	}
	return h, nil
}

// veth creates a veth pair with end a in nsA and end b in nsB, both up, with addresses.
func veth(nsA netns.NsHandle, a string, addrA netip.Prefix, nsB netns.NsHandle, b string, addrB netip.Prefix) error {
	ha, err := netlink.NewHandleAt(nsA)
	if err != nil {
		return fmt.Errorf("lab: netlink: %w", err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(nsB)
	if err != nil {
		return fmt.Errorf("lab: netlink: %w", err)
	}
	defer hb.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(int(nsB))}
	if err := ha.LinkAdd(v); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			return &FeatureError{Feature: "veth (CONFIG_VETH)", Step: "creating veth pair " + a + "/" + b, Err: err}
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: creating veth %s: %v", ErrNotRoot, a, err)
		}
		return fmt.Errorf("lab: creating veth %s/%s: %w", a, b, err)
	}
	ends := []struct {
		h    *netlink.Handle
		name string
		addr netip.Prefix
		link netlink.Link
	}{{h: ha, name: a, addr: addrA}, {h: hb, name: b, addr: addrB}}
	for i := range ends {
		e := &ends[i]
		l, err := e.h.LinkByName(e.name)
		if err != nil {
			return fmt.Errorf("lab: link %s: %w", e.name, err)
		}
		e.link = l
		ad := &netlink.Addr{IPNet: &net.IPNet{IP: e.addr.Addr().AsSlice(), Mask: net.CIDRMask(e.addr.Bits(), e.addr.Addr().BitLen())}}
		if e.addr.Addr().Is6() {
			ad.Flags = unix.IFA_F_NODAD
		}
		if err := e.h.AddrAdd(l, ad); err != nil {
			return fmt.Errorf("lab: address %s on %s: %w", e.addr, e.name, err)
		}
		if err := e.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("lab: link %s up: %w", e.name, err)
		}
	}
	// Permanent neighbour entries: no ARP or neighbour discovery delays (a fresh IPv6 link
	// otherwise holds the first segments for seconds), so the handshake's RTT sample, and
	// with it the retransmission timeout, is that of the veth.
	for i, e := range ends {
		peer := ends[1-i]
		fam := netlink.FAMILY_V4
		if peer.addr.Addr().Is6() {
			fam = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{LinkIndex: e.link.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
			IP: peer.addr.Addr().AsSlice(), HardwareAddr: peer.link.Attrs().HardwareAddr}
		if err := e.h.NeighSet(n); err != nil {
			return fmt.Errorf("lab: neighbour %s on %s: %w", peer.addr.Addr(), e.name, err)
		}
	}
	return nil
}

func defaultRoute(ns netns.NsHandle, dev string, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("lab: netlink: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", dev, err)
	}
	rt := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
	if gw.Is6() {
		rt.Family = netlink.FAMILY_V6
	} else {
		rt.Family = netlink.FAMILY_V4
	}
	if err := h.RouteAdd(rt); err != nil {
		return fmt.Errorf("lab: default route via %s: %w", gw, err)
	}
	return nil
}

func (r *run) build(ctx context.Context) error {
	var err error
	if r.client, err = r.newNS("c"); err != nil {
		return err
	}
	if r.server, err = r.newNS("s"); err != nil {
		return err
	}
	p := r.plan
	if !routed(r.o.Scenario) {
		if err := veth(r.client, ifClient, p.client, r.server, ifServer, p.server); err != nil {
			return err
		}
	} else {
		if r.router, err = r.newNS("r"); err != nil {
			return err
		}
		if err := veth(r.client, ifClient, p.client, r.router, ifRouterClient, p.routerClient); err != nil {
			return err
		}
		if err := veth(r.router, ifRouterServer, p.routerServer, r.server, ifServer, p.server); err != nil {
			return err
		}
		if err := defaultRoute(r.client, ifClient, p.routerClient.Addr()); err != nil {
			return err
		}
		if err := defaultRoute(r.server, ifServer, p.routerServer.Addr()); err != nil {
			return err
		}
		fwd := "net/ipv4/ip_forward"
		if r.o.IPv6 {
			fwd = "net/ipv6/conf/all/forwarding"
		}
		if err := writeSysctl(r.router, fwd, "1"); err != nil {
			return err
		}
	}
	if sd, ok := lookupScenario(r.o.Scenario); ok {
		if err := sd.setup(r); err != nil {
			return err
		}
	}
	if r.o.Retries2 > 0 {
		if err := writeSysctl(r.client, "net/ipv4/tcp_retries2", strconv.Itoa(r.o.Retries2)); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.startServer(ctx)
}

func (r *run) serverAddr() string {
	return net.JoinHostPort(r.plan.server.Addr().String(), strconv.Itoa(serverPort))
}

func (r *run) startServer(ctx context.Context) error {
	params, err := json.Marshal(r.o.Params)
	if err != nil {
		return fmt.Errorf("lab: params: %w", err)
	}
	cmd := exec.Command(r.o.HelperPath)
	cmd.Env = append(os.Environ(),
		HelperEnv+"=server",
		envNetns+"="+filepath.Join(netnsDir, r.names[1]),
		envListen+"="+r.serverAddr(),
		envParams+"="+string(params))
	if _, ok := r.o.Detector.(ServerDetector); ok {
		// The server process finds the detector's server side by its mode name.
		cmd.Env = append(cmd.Env, envMode+"="+r.o.Mode)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("lab: server stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("lab: server stdout: %w", err)
	}
	r.helperErr = &strings.Builder{}
	cmd.Stderr = &lockedWriter{w: r.helperErr}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting the server process %s: %w", r.o.HelperPath, err)
	}
	r.helper, r.helperIn, r.helperOut = cmd, in, bufio.NewScanner(out)
	if err := r.expect(ctx, "ready", 10*time.Second); err != nil {
		return fmt.Errorf("lab: the server process did not start (does main call lab.RunHelperIfRequested?): %w", err)
	}
	return nil
}

// expect waits for one line from the server process.
func (r *run) expect(ctx context.Context, want string, timeout time.Duration) error {
	lc := make(chan error, 1)
	go func() {
		if r.helperOut.Scan() {
			if got := strings.TrimSpace(r.helperOut.Text()); got != want {
				lc <- fmt.Errorf("server said %q, want %q", got, want)
				return
			}
			lc <- nil
			return
		}
		lc <- fmt.Errorf("server process ended: %v %s", r.helperOut.Err(), strings.TrimSpace(r.helperErr.String()))
	}()
	select {
	case err := <-lc:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no %q from the server process within %s", want, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *run) dial(ctx context.Context) error {
	return inNS(r.client, func() error {
		dial := func() error {
			d := net.Dialer{KeepAlive: -1, Timeout: 10 * time.Second}
			c, err := d.DialContext(ctx, "tcp", r.serverAddr())
			if err != nil {
				return fmt.Errorf("lab: client connect to %s: %w", r.serverAddr(), err)
			}
			r.conn = c.(*net.TCPConn)
			return nil
		}
		if w, ok := r.o.Detector.(dialWrapper); ok {
			var err error
			r.undoDial, err = w.wrapDial(ctx, r.o, dial)
			return err
		}
		return dial()
	})
}

// timeline collects the measured events (the fault and probes arrive from the wait loop).
type timeline struct {
	mu     sync.Mutex
	events []keepalive.Event
}

func (t *timeline) add(at time.Duration, kind, detail string) {
	t.mu.Lock()
	t.events = append(t.events, keepalive.Event{At: at, Kind: kind, Detail: detail})
	t.mu.Unlock()
}

type detection struct {
	by, errno, text string
	at              time.Time
}

func (r *run) measure(ctx context.Context, pred keepalive.Timeline) (Result, error) {
	o := r.o
	res := Result{RunID: o.RunID, Scenario: o.Scenario, Variant: o.NATOnExpiry, Mode: o.Mode, IPv6: o.IPv6,
		Config: o.Config, NATTimeout: o.NATTimeout, Max: o.Max, Predicted: pred, HZ: o.HZ, HZSource: o.HZSource, Retries2: o.Retries2}
	sd, _ := lookupScenario(o.Scenario)
	if sd.inFlight() {
		res.Segments = o.Segments
	}
	if o.Mode == "user-timeout" {
		res.Config = userTimeoutConfig(o.Config)
	}
	if err := r.dial(ctx); err != nil {
		return res, err
	}
	netstat, err := openCounters(r.client, "netstat")
	if err != nil {
		return res, err
	}
	defer netstat.Close()
	snmp, err := openCounters(r.client, "snmp")
	if err != nil {
		return res, err
	}
	defer snmp.Close()

	// Greeting: the server's answer is the last activity.
	_ = r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(r.conn, greeting); err != nil {
		return res, fmt.Errorf("lab: greeting: %w", err)
	}
	buf := make([]byte, len(greeting))
	if _, err := io.ReadFull(r.conn, buf); err != nil || string(buf) != greeting {
		return res, fmt.Errorf("lab: greeting answer %q: %v", buf, err)
	}
	t0 := time.Now()
	_ = r.conn.SetDeadline(time.Time{})
	probes0, err := netstat.read("TcpExt:", "TCPKeepAlive")
	if err != nil {
		return res, err
	}
	retrans0, err := snmp.read("Tcp:", "RetransSegs")
	if err != nil {
		return res, err
	}
	icmp0, _ := netstat.read("TcpExt:", "OutOfWindowIcmps")

	detc := make(chan detection, 2)
	var once sync.Once
	report := func(by, errno, text string) {
		once.Do(func() { detc <- detection{by: by, errno: errno, text: text, at: time.Now()} })
	}
	local, _ := netip.ParseAddrPort(r.conn.LocalAddr().String())
	remote, _ := netip.ParseAddrPort(r.conn.RemoteAddr().String())
	sess := &Session{Conn: r.conn, Local: local, Remote: remote,
		Namespace: filepath.Join(netnsDir, r.names[0]), ServerPID: r.helper.Process.Pid, Options: o,
		Do: func(fn func() error) error { return inNS(r.client, fn) }, Start: t0, ClientPID: os.Getpid(),
		report: report,
		reportErr: func(err error) {
			errno, text := classify(err)
			report("application", errno, text)
		}}
	stop, err := o.Detector.Attach(ctx, sess)
	if err != nil {
		return res, err
	}
	r.stop = stop

	// The application: it waits for data and learns about the peer only through errors.
	if !sess.ReadsConn {
		go func() {
			b := make([]byte, 4096)
			for {
				if _, err := r.conn.Read(b); err != nil {
					sess.ReportError(err)
					return
				}
			}
		}()
	}

	tl := &timeline{}
	ref := t0 // time zero of the measured timeline (for InFlight: the unacknowledged write)
	tl.add(0, keepalive.EventLastActivity, "greeting answer received from the server")
	faultTimer := time.NewTimer(o.FaultAfter)
	defer faultTimer.Stop()
	var faultAt time.Time
	if at, text, ok := sd.passive(o); ok {
		res.RTT, res.RTO = tcpTimes(r.conn)
		faultAt = t0.Add(at)
		tl.add(at, keepalive.EventMiddlebox, text)
		faultTimer.Stop()
	}
	deadline := time.NewTimer(o.Max)
	defer deadline.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	prog := time.NewTicker(progressEvery)
	defer prog.Stop()
	expected := o.Max
	if pred.Detected && pred.Detection <= o.Max {
		expected = pred.Detection
	}
	probes, retrans := 0, 0
	sample := func(now time.Time) {
		if v, err := netstat.read("TcpExt:", "TCPKeepAlive"); err == nil {
			for ; probes < v-probes0; probes++ {
				tl.add(now.Sub(ref), keepalive.EventProbe, fmt.Sprintf("keepalive probe %d seen (TcpExt TCPKeepAlive)", probes+1))
			}
		}
		if v, err := snmp.read("Tcp:", "RetransSegs"); err == nil {
			for ; retrans < v-retrans0; retrans++ {
				tl.add(now.Sub(ref), keepalive.EventRetransmit, fmt.Sprintf("retransmission %d seen (Tcp RetransSegs)", retrans+1))
			}
		}
	}
	var det *detection
wait:
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case d := <-detc:
			det = &d
			break wait
		case <-deadline.C:
			break wait
		case now := <-poll.C:
			sample(now)
		case now := <-prog.C:
			if o.Progress != nil {
				o.Progress(Progress{RunID: o.RunID, Elapsed: now.Sub(ref), Expected: expected, Max: o.Max, Probes: probes})
			}
		case <-faultTimer.C:
			res.RTT, res.RTO = tcpTimes(r.conn)
			var err error
			faultAt, err = sd.inject(r)
			if err != nil {
				return res, err
			}
			if sd.inFlight() {
				// Time zero moves to the write the server never acknowledges.
				ref = faultAt
				tl = &timeline{}
				tl.add(0, keepalive.EventLastActivity, fmt.Sprintf("client writes %d segment(s) the server never acknowledges", o.Segments))
				deadline.Reset(o.Max)
			}
			tl.add(faultAt.Sub(ref), keepalive.EventFault, sd.faultText(o))
		}
	}
	end := time.Now()
	if det != nil {
		end = det.at
	}
	sample(end)
	res.Probes, res.Retransmits = probes, retrans
	if v, err := netstat.read("TcpExt:", "OutOfWindowIcmps"); err == nil {
		res.IgnoredICMP = v - icmp0
	}
	if !faultAt.IsZero() {
		res.FaultAt = faultAt.Sub(ref)
	}
	if det != nil {
		res.Detected = true
		res.DetectedBy, res.Error, res.ErrorText = det.by, det.errno, det.text
		res.SinceLastActivity = det.at.Sub(ref)
		if !faultAt.IsZero() {
			res.SinceFault = det.at.Sub(faultAt)
		}
		who := "application gets " + orDash(det.errno)
		if det.by != "application" {
			who = det.by + " reports the peer gone: " + det.text
		}
		tl.add(res.SinceLastActivity, keepalive.EventError, who)
	}
	res.Measured = tl.events
	sortEvents(res.Measured)
	judge(&res)
	return res, nil
}

// run implements faults for the scenarios.
var _ faults = (*run)(nil)

func (r *run) options() Options { return r.o }

func (r *run) blackholeServer(dir string) error { return blackhole(r.server, dir) }

func (r *run) restoreServer() error { return removeTable(r.server) }

func (r *run) routerLinkDown() error {
	h, err := netlink.NewHandleAt(r.router)
	if err != nil {
		return fmt.Errorf("lab: netlink: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifRouterServer)
	if err != nil {
		return fmt.Errorf("lab: link %s: %w", ifRouterServer, err)
	}
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("lab: link %s down: %w", ifRouterServer, err)
	}
	return nil
}

func (r *run) abortServer() error {
	if _, err := io.WriteString(r.helperIn, "abort\n"); err != nil {
		return fmt.Errorf("lab: telling the server to abort: %w", err)
	}
	if err := r.expect(context.Background(), "aborted", 5*time.Second); err != nil {
		return fmt.Errorf("lab: server abort: %w", err)
	}
	return nil
}

func (r *run) stopServer() error {
	if err := r.helper.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("lab: SIGSTOP server process %d: %w", r.helper.Process.Pid, err)
	}
	return nil
}

func (r *run) clientWrite(n int) (time.Time, error) {
	at := time.Now()
	if _, err := r.conn.Write(make([]byte, n)); err != nil {
		return time.Time{}, fmt.Errorf("lab: in-flight write: %w", err)
	}
	return at, nil
}

func (r *run) segmentSize() int { return mss(r.conn) }

// natRouter makes the router masquerade towards the server; the nft ct and masquerade
// expressions load and enable conntrack in the router's namespace, and only then do its
// per-namespace sysctls exist.
func (r *run) natRouter(onExpiry string, timeout time.Duration) error {
	if err := natRouter(r.router, ifRouterServer, onExpiry); err != nil {
		return err
	}
	if err := writeSysctl(r.router, "net/netfilter/nf_conntrack_tcp_loose", "0"); err != nil {
		return err
	}
	secs := strconv.Itoa(int(timeout / time.Second))
	return writeSysctl(r.router, "net/netfilter/nf_conntrack_tcp_timeout_established", secs)
}

// mss is the connection's maximum segment size (TCP_MAXSEG), 1000 when unknown.
func mss(c *net.TCPConn) int {
	n := 1000
	rc, err := c.SyscallConn()
	if err != nil {
		return n
	}
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG); err == nil && v > 0 {
			n = v
		}
	})
	return n
}

// tcpTimes reads the kernel's smoothed RTT and retransmission timeout of c (tcp_info).
func tcpTimes(c *net.TCPConn) (rtt, rto time.Duration) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0
	}
	_ = rc.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			rtt = time.Duration(ti.Rtt) * time.Microsecond
			rto = time.Duration(ti.Rto) * time.Microsecond
		}
	})
	return rtt, rto
}

// classify returns the errno name of a connection error.
func classify(err error) (errno, text string) {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e), err.Error()
	}
	if errors.Is(err, io.EOF) {
		return "EOF", "the server closed the connection"
	}
	return "", err.Error()
}

// teardown undoes build in reverse; it is safe to call on a partly built run.
func (r *run) teardown() error {
	var errs []error
	if r.stop != nil {
		r.stop()
	}
	if r.undoDial != nil {
		r.undoDial()
	}
	if r.conn != nil {
		_ = r.conn.SetLinger(0)
		_ = r.conn.Close()
	}
	if r.helper != nil && r.helper.Process != nil {
		_ = r.helperIn.Close()
		_ = r.helper.Process.Kill()
		_ = r.helper.Wait()
	}
	for _, h := range r.hs {
		_ = h.Close()
	}
	for i := len(r.names) - 1; i >= 0; i-- {
		if err := deleteNamedNS(r.names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// preflight checks the privileges and kernel features every run needs.
func preflight() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return &FeatureError{Feature: "network namespaces (CONFIG_NET_NS)", Step: "checking /proc/self/ns/net", Err: err}
	}
	return nil
}
