package keepalive_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Dial a connection that notices a dead peer within 30 s of silence.
func ExampleDial() {
	cfg := keepalive.Config{Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 30 * time.Second}
	conn, err := keepalive.Dial(context.Background(), "tcp", "127.0.0.1:8080", cfg)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer conn.Close()
}

// Apply settings to an existing connection and read back what the kernel uses.
func ExampleApply() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	conn, _ := net.Dial("tcp", ln.Addr().String())
	defer conn.Close()

	cfg := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3}
	if err := keepalive.Apply(conn.(*net.TCPConn), cfg); err != nil {
		fmt.Println(err)
		return
	}
	got, err := keepalive.Get(conn.(*net.TCPConn))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.Enabled, got.Idle, got.Interval, got.Count)
}

// Use the library with the standard library's dialer (adds TCP_USER_TIMEOUT, which
// net.KeepAliveConfig cannot set). KeepAlive -1 is required: without it Go overwrites cfg with
// its own 15 s defaults after connecting. NewDialer does this for you.
func ExampleControl() {
	cfg := keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: time.Minute}
	d := net.Dialer{KeepAlive: -1, Control: keepalive.Control(cfg)}
	_ = d
}

// A ready *net.Dialer from an existing one: its Timeout and Control are kept, and what Go needs
// so that cfg is not overwritten after connecting is set.
func ExampleNewDialer() {
	cfg := keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: time.Minute}
	d, err := keepalive.NewDialer(&net.Dialer{Timeout: 5 * time.Second}, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Timeout, d.KeepAlive, d.KeepAliveConfig.Enable)
	// Output: 5s -1ns false
}

// A server whose accepted connections carry cfg. With a UserTimeout set, Multipath TCP (Go's
// default for listeners on Linux since Go 1.24) is turned off: an MPTCP socket has no
// TCP_USER_TIMEOUT.
func ExampleNewListenConfig() {
	cfg := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: 90 * time.Second}
	lc, err := keepalive.NewListenConfig(nil, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	fmt.Println(lc.MultipathTCP())
	// Output: false
}

// net/http: every connection the Transport makes carries cfg.
func ExampleDialFunc() {
	cfg := keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: time.Minute}
	client := &http.Client{Transport: &http.Transport{DialContext: keepalive.DialFunc(cfg)}}
	_ = client
	// The same function fits pgx and go-redis (see the examples/clients module):
	//	pgxConfig.DialFunc = keepalive.DialFunc(cfg)
	//	redis.NewClient(&redis.Options{Addr: addr, Dialer: keepalive.DialFunc(cfg)})
}

// gRPC: grpc.WithContextDialer takes the func(ctx, address) shape.
func ExampleContextDialer() {
	cfg := keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: time.Minute}
	dial := keepalive.ContextDialer(cfg)
	_ = dial
	// conn, err := grpc.NewClient(target, grpc.WithContextDialer(dial), ...)
}

// Apply settings to a TLS connection: ApplyConn finds the TCP connection underneath.
func ExampleApplyConn() {
	conn, err := tls.Dial("tcp", "example.internal:443", &tls.Config{})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer conn.Close()
	if err := keepalive.ApplyConn(conn, keepalive.Config{Idle: 30 * time.Second}); err != nil {
		fmt.Println(err)
	}
}

// Switch keepalive off for one connection accepted from a listener that has it on.
func ExampleDisable() {
	ln, err := keepalive.Listen(context.Background(), "tcp", "127.0.0.1:0", keepalive.Config{Idle: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	s, _ := ln.Accept()
	defer s.Close()
	if err := keepalive.Disable(s.(*net.TCPConn)); err != nil {
		fmt.Println(err)
		return
	}
	got, _ := keepalive.Get(s.(*net.TCPConn))
	fmt.Println(got.Enabled)
}

// How long do Linux's defaults take to notice a crashed peer?
func ExampleDetectionTime() {
	d, _ := keepalive.DetectionTime(keepalive.LinuxDefaults(), keepalive.ScenarioSilent)
	fmt.Println(keepalive.HumanDuration(d))
	// Output: 2 h 11 min 15 s
}

// The kernel's course of events for a peer that vanished.
func ExamplePredict() {
	tl := keepalive.Predict(keepalive.Model{
		Config:   keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3},
		Scenario: keepalive.ScenarioSilent,
		HZ:       250, // CONFIG_HZ of the target kernel (host.DetectTimers learns it)
	})
	for _, e := range tl.Events {
		fmt.Println(e.At, "…", e.At+e.Slack, e.Kind)
	}
	fmt.Println(tl.Error, "between", tl.Earliest, "and", tl.Latest, "(textbook", tl.Detection, "with every timer on time)")
	// Output:
	// 0s … 0s last-activity
	// 0s … 0s fault
	// 2s … 2.032s probe
	// 3.024s … 3.056s probe
	// 4.048s … 4.08s probe
	// 5.072s … 5.104s kill
	// 5.072s … 5.104s error
	// ETIMEDOUT between 5.072s and 5.104s (textbook 5s with every timer on time)
}

// Settings for a service behind an AWS NAT Gateway that must notice dead peers within 2 min.
func ExampleRecommend() {
	env, _ := keepalive.LookupEnvironment("aws-nat-gateway")
	r, err := keepalive.Recommend(keepalive.Requirement{MiddleboxTimeout: env.IdleTimeout, DetectWithin: 2 * time.Minute, OS: "linux"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Config)
	// Output: idle 1m0s intvl 20s cnt 3 ut 2m0s
}

// Convert from and to the standard library's keepalive configuration.
func ExampleConfig_NetConfig() {
	cfg := keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 4}
	d := net.Dialer{KeepAliveConfig: cfg.NetConfig()}
	fmt.Println(d.KeepAliveConfig.Idle, d.KeepAliveConfig.Count)
	// Output: 30s 4
}

// How late a kernel timer may fire: the timer-wheel granule at the kernel's HZ.
func ExampleGranule() {
	for _, hz := range []int{100, 250, 1000} {
		fmt.Println(hz, keepalive.Granule(2*time.Second, hz), keepalive.Granule(75*time.Second, hz))
	}
	// Output:
	// 100 80ms 5.12s
	// 250 32ms 2.048s
	// 1000 64ms 4.096s
}

// Presets say what refreshes them; a load balancer that counts only data cannot be kept by
// TCP keepalive.
func ExampleEnvironment_Requirement() {
	for _, name := range []string{"consumer-router", "aws-alb"} {
		env, _ := keepalive.LookupEnvironment(name)
		r, err := keepalive.Recommend(env.Requirement())
		if errors.Is(err, keepalive.ErrDataOnly) {
			fmt.Println(name+":", keepalive.HeartbeatAdvice)
			continue
		}
		fmt.Println(name+":", env.Range(), "→", r.Config)
	}
	// Output:
	// consumer-router: 1 min – 10 min → idle 48s intvl 9s cnt 3 ut 1m15s
	// aws-alb: TCP keepalive cannot keep this flow: use application heartbeats (package heartbeat) or the protocol's own pings
}
