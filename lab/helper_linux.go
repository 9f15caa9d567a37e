//go:build linux

package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Environment of the server process (set by the lab, read by runHelper).
const (
	envNetns  = "KEEPALIVE_LAB_NETNS"  // path of the server namespace
	envListen = "KEEPALIVE_LAB_LISTEN" // address:port to listen on
	envMode   = "KEEPALIVE_LAB_MODE"   // detector name (for its server side)
	envParams = "KEEPALIVE_LAB_PARAMS" // Options.Params as JSON
)

// The server's protocol with the lab: it prints "ready" on stdout once listening, accepts
// one connection, answers the greeting line, then reads commands on stdin: "abort" closes
// the connection with SO_LINGER 0 (an RST, which the Reboot scenario drops on the way out)
// and answers "aborted". End of stdin (the lab exited or was killed) ends the process.
func runHelper(role string, extra []Detector) error {
	if role != "server" {
		return fmt.Errorf("unknown role %q (allowed: server)", role)
	}
	nsPath, addr := os.Getenv(envNetns), os.Getenv(envListen)
	if nsPath == "" || addr == "" {
		return fmt.Errorf("%s and %s must be set", envNetns, envListen)
	}
	var params map[string]string
	if p := os.Getenv(envParams); p != "" {
		if err := json.Unmarshal([]byte(p), &params); err != nil {
			return fmt.Errorf("%s: %w", envParams, err)
		}
	}
	var det Detector
	if m := os.Getenv(envMode); m != "" {
		d, err := lookupDetector(m, extra)
		if err != nil {
			return err
		}
		det = d
	}

	// The listening socket must be created on a thread inside the server namespace; the
	// thread stays there (this process has no other use for it).
	runtime.LockOSThread()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", nsPath, err)
	}
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter namespace %s: %w", nsPath, err)
	}
	ns.Close()
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, "ready")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdin := bufio.NewScanner(os.Stdin)
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		for stdin.Scan() {
			cmds <- strings.TrimSpace(stdin.Text())
		}
	}()

	type accepted struct {
		c   net.Conn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ac <- accepted{c, err}
	}()
	var conn *net.TCPConn
	select {
	case a := <-ac:
		if a.err != nil {
			return a.err
		}
		conn = a.c.(*net.TCPConn)
	case _, ok := <-cmds:
		if !ok {
			return nil
		}
		return fmt.Errorf("command before a connection was accepted")
	case <-time.After(time.Minute):
		return fmt.Errorf("no connection within 1 minute")
	}
	ln.Close()

	// Greeting: one line in, the same line out.
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(conn, line); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}

	go func() {
		if sd, ok := det.(ServerDetector); ok {
			_ = sd.Serve(ctx, &bufferedConn{conn, br}, params)
			return
		}
		_, _ = io.Copy(io.Discard, br)
	}()

	for cmd := range cmds {
		switch cmd {
		case "abort":
			_ = conn.SetLinger(0)
			_ = conn.Close()
			fmt.Fprintln(os.Stdout, "aborted")
		case "exit":
			return nil
		}
	}
	return nil
}

// bufferedConn hands a ServerDetector the connection with the bytes already buffered.
type bufferedConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
