package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// safetyPattern is the byte stream every connection carries: conn c's byte at
// offset o is pattern[(o+c*7919) % len(pattern)] (prime length, so the
// streams never line up).
func safetyPattern() []byte {
	p := make([]byte, 1<<20-3) // 1048573, prime
	r := rand.New(rand.NewPCG(42, 43))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func patternAt(p []byte, c int, off int64, dst []byte) {
	pos := int((off + int64(c)*7919) % int64(len(p)))
	for n := 0; n < len(dst); {
		k := copy(dst[n:], p[pos:])
		n += k
		pos = 0
	}
}

// safetyStats is what the transfer helper process reports.
type safetyStats struct {
	Bytes, Corrupted    int64
	ReadErrs, WriteErrs int64
	CRCMismatch         int
	MaxGap, Elapsed     time.Duration
	FirstErr            string
}

const (
	safetyConns = 100
	safetyTotal = 1 << 30
)

// TestSafetyHelper is the transfer half of TestSafetyUnderLoad, run in its
// own process (like a real service) so that probing competes with it only
// for CPUs, not for the Go scheduler.
func TestSafetyHelper(t *testing.T) {
	if os.Getenv("KAPROBE_SAFETY_HELPER") != "1" {
		t.Skip("helper process for TestSafetyUnderLoad; runs only when started by it")
	}
	lns, err := netns.GetFromName(os.Getenv("KAPROBE_LNS"))
	if err != nil {
		t.Fatal(err)
	}
	pns, err := netns.GetFromName(os.Getenv("KAPROBE_PNS"))
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNet{lns: lns, pns: pns}
	ln := tn.listen(t, netip.MustParseAddr(os.Getenv("KAPROBE_PEER")))
	cl, sv := tn.pair(t, ln, safetyConns)
	for _, c := range cl {
		f := flowOf(c)
		fmt.Printf("FLOW %s %s\n", f.Local, f.Remote)
	}
	fmt.Println("START")
	st := safetyTransfer(cl, sv)
	b, _ := json.Marshal(st)
	fmt.Printf("RESULT %s\n", b)
	// Keep the connections open until the prober is done with them.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func safetyTransfer(cl, sv []*net.TCPConn) safetyStats {
	const (
		conns = safetyConns
		per   = safetyTotal / conns
		chunk = 64 << 10
	)
	pat := safetyPattern()
	var (
		wg                  sync.WaitGroup
		corrupted, received atomic.Int64
		readErrs, writeErrs atomic.Int64
		maxGapNs            atomic.Int64
		crcSent, crcRecv    [conns]uint32
		firstErr            atomic.Value
	)
	setErr := func(err error) { firstErr.CompareAndSwap(nil, err.Error()) }
	start := time.Now()
	for i := range conns {
		wg.Add(2)
		go func() { // sender, local namespace
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			buf := make([]byte, chunk)
			crc := uint32(0)
			for off := int64(0); off < per; off += chunk {
				n := min(chunk, int(per-off))
				patternAt(pat, i, off, buf[:n])
				crc = crc32.Update(crc, crc32.IEEETable, buf[:n])
				if _, err := cl[i].Write(buf[:n]); err != nil {
					writeErrs.Add(1)
					setErr(err)
					return
				}
				// Pace each stream to about 0.75 MB/s (the whole transfer takes
				// ~14 s) with random pauses, so that sockets are sometimes busy
				// and sometimes drained: drained ones are learned by injection
				// and may get 1-byte probes.
				time.Sleep(time.Duration(r.IntN(170)) * time.Millisecond)
			}
			crcSent[i] = crc
			_ = cl[i].CloseWrite()
		}()
		go func() { // receiver, peer namespace
			defer wg.Done()
			buf := make([]byte, chunk)
			want := make([]byte, chunk)
			crc := uint32(0)
			var off int64
			last := time.Now()
			for {
				_ = sv[i].SetReadDeadline(time.Now().Add(20 * time.Second))
				n, err := sv[i].Read(buf)
				if n > 0 {
					if gap := time.Since(last); gap.Nanoseconds() > maxGapNs.Load() {
						maxGapNs.Store(gap.Nanoseconds())
					}
					last = time.Now()
					patternAt(pat, i, off, want[:n])
					if !bytes.Equal(buf[:n], want[:n]) {
						for k := 0; k < n; k++ {
							if buf[k] != want[k] {
								corrupted.Add(1)
							}
						}
					}
					crc = crc32.Update(crc, crc32.IEEETable, buf[:n])
					off += int64(n)
					received.Add(int64(n))
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					readErrs.Add(1)
					setErr(err)
					return
				}
			}
			crcRecv[i] = crc
			if off != per {
				setErr(fmt.Errorf("stream %d: %d bytes, want %d", i, off, per))
				readErrs.Add(1)
			}
		}()
	}
	wg.Wait()
	st := safetyStats{Bytes: received.Load(), Corrupted: corrupted.Load(), ReadErrs: readErrs.Load(),
		WriteErrs: writeErrs.Load(), MaxGap: time.Duration(maxGapNs.Load()), Elapsed: time.Since(start)}
	for i := range conns {
		if crcSent[i] != crcRecv[i] {
			st.CRCMismatch++
		}
	}
	if e, ok := firstErr.Load().(string); ok {
		st.FirstErr = e
	}
	return st
}

// TestSafetyUnderLoad: 100 connections carry 1 GiB of checksummed data (in a
// separate process) while every one of them is probed about every 10 ms for
// the whole transfer: learning injections whenever a socket is momentarily
// idle, 1-byte probes when idle, zero-length ones when busy. Nothing may be
// corrupted, reset or stalled.
func TestSafetyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: 1 GiB transfer (-short)")
	}
	tn := newTestNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSafetyHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "KAPROBE_SAFETY_HELPER=1", "KAPROBE_LNS="+tn.Local, "KAPROBE_PNS="+tn.Peer, "KAPROBE_PEER="+tn.PeerIP.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	var flows []Flow
	for sc.Scan() {
		line := sc.Text()
		if line == "START" {
			break
		}
		var l, r string
		if _, err := fmt.Sscanf(line, "FLOW %s %s", &l, &r); err == nil {
			flows = append(flows, Flow{Local: netip.MustParseAddrPort(l), Remote: netip.MustParseAddrPort(r)})
		}
	}
	if len(flows) != safetyConns {
		t.Fatalf("helper reported %d flows", len(flows))
	}
	resc := make(chan string, 1)
	go func() {
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "RESULT ") {
				resc <- strings.TrimPrefix(line, "RESULT ")
				return
			}
		}
		resc <- ""
	}()

	// The socket check reads idiag_wqueue (see queueChecker): lock-free, so
	// it keeps up with sockets busy with the transfer.
	p, err := New(NewOptions{Netns: tn.Local, Checker: newQueueChecker(t, tn.lns)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Up to 10 probes 10 ms apart per round, rounds back to back, zero-length
	// probes to one socket at least 10 ms apart (an idle socket gets the
	// 1-byte probe sooner, a busy one waits). A round costs a socket check,
	// a learning step and the wait for answers: each connection is probed
	// about every 55 ms on 2 cores.
	opt := Options{Config: Config{Count: 10, Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, Spacing: 10 * time.Millisecond}}
	counts := map[Verdict]int{}
	var oneByte, probes, injected, rounds int
	var resLine string
	start := time.Now()
loop:
	for {
		select {
		case resLine = <-resc:
			break loop
		case <-ctx.Done():
			t.Fatal("transfer did not finish in time")
		default:
		}
		res, err := p.Probe(ctx, flows, opt, nil)
		if err != nil {
			t.Fatalf("probe round %d: %v", rounds, err)
		}
		rounds++
		for _, r := range res {
			if r.Verdict == Reset {
				t.Logf("reset: %+v", r)
			}
			counts[r.Verdict]++
			oneByte += r.OneByte
			probes += r.Probes
			if r.Learned == "injection" {
				injected++
			}
		}
	}
	elapsed := time.Since(start)
	var st safetyStats
	if err := json.Unmarshal([]byte(resLine), &st); err != nil {
		t.Fatalf("helper result %q: %v", resLine, err)
	}
	t.Logf("%d MiB in %v; %d probe rounds (%.1f ms each), %d probes (%d one-byte; one every %.1f ms per connection), %d learned by injection; verdicts %v; longest receive gap %v",
		st.Bytes>>20, st.Elapsed.Round(time.Millisecond), rounds, float64(elapsed.Milliseconds())/float64(max(rounds, 1)),
		probes, oneByte, float64(elapsed.Milliseconds())*safetyConns/float64(max(probes, 1)), injected, counts, st.MaxGap.Round(time.Millisecond))
	if st.FirstErr != "" {
		t.Errorf("first transfer error: %v", st.FirstErr)
	}
	if st.Corrupted != 0 || st.CRCMismatch != 0 {
		t.Errorf("%d corrupted bytes, %d CRC mismatches", st.Corrupted, st.CRCMismatch)
	}
	if want := int64(safetyTotal / safetyConns * safetyConns); st.Bytes != want {
		t.Errorf("received %d bytes, want %d", st.Bytes, want)
	}
	if st.ReadErrs != 0 || st.WriteErrs != 0 || counts[Reset] != 0 {
		t.Errorf("resets/errors: %d read, %d write, %d reset verdicts", st.ReadErrs, st.WriteErrs, counts[Reset])
	}
	if st.MaxGap > 3*time.Second {
		t.Errorf("a stream stalled for %v", st.MaxGap)
	}
	if rounds < 10 || probes == 0 || injected == 0 || oneByte == 0 {
		t.Errorf("probing too thin to mean anything: %d rounds, %d probes, %d injections, %d one-byte", rounds, probes, injected, oneByte)
	}
}
