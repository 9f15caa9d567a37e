package host_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

// List the established connections to 10.0.0.0/8 idle for more than 10 minutes, with their
// owners and exact keepalive settings.
func ExampleList() {
	socks, err := host.List(context.Background(), host.ListOptions{
		Selector: host.Selector{
			Peers:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			States:   []host.State{host.StateEstablished},
			IdleOver: 10 * time.Minute,
		},
		Deep: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range socks {
		ka := "unknown"
		if s.Settings != nil {
			ka = s.Settings.String()
		} else if on, known := s.KeepaliveArmed(); known {
			ka = fmt.Sprintf("on=%v (inferred)", on)
		}
		fmt.Println(s.String(), s.Owners, ka)
	}
}

// Turn keepalive on for every connection of one process, then re-read one of them.
func ExampleRetrofit() {
	ctx := context.Background()
	socks, err := host.List(ctx, host.ListOptions{Selector: host.Selector{PIDs: []int{4242}}, Owners: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 3}
	for _, r := range host.Retrofit(ctx, socks, cfg, host.RetrofitOptions{}) {
		switch {
		case errors.Is(r.Err, host.ErrGone):
			fmt.Println(r.Socket.String(), "gone meanwhile")
		case r.Err != nil:
			fmt.Println(r.Socket.String(), r.Err)
		default:
			fmt.Println(r.Socket.String(), r.Before, "→", r.After)
		}
	}
	if len(socks) > 0 {
		fresh, err := host.Lookup(ctx, socks[0])
		if err == nil && fresh.Info != nil {
			fmt.Println("idle", fresh.Info.Idle(), "timer", fresh.Timer, fresh.TimerExpires)
		}
	}
}

// List the connections of every container on the host, wherever their network namespace
// is mounted or held, labelled by container.
func ExampleNamespaces() {
	nss, err := host.Namespaces(func(skipped error) { fmt.Println("warning:", skipped) })
	if err != nil {
		fmt.Println(err)
		return
	}
	var containers []host.NetNS
	for _, n := range nss {
		if n.Container != nil {
			containers = append(containers, n)
		}
	}
	socks, err := host.List(context.Background(), host.ListOptions{Namespaces: containers, Owners: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range socks {
		fmt.Println(s.Namespace.Label(), s.String(), s.Owners)
	}
}

// Assess judges a connection against the middlebox in front of it.
func ExampleAssess() {
	s := host.Socket{State: host.StateEstablished, Settings: &keepalive.Settings{Enabled: true}}
	a := host.Assess(s, host.AssessOptions{Middlebox: 350 * time.Second, MiddleboxName: "aws-nat-gateway"})
	fmt.Println(a.Risk, a.AtRisk)
	fmt.Println(a.Verdict)
	// Output:
	// middlebox true
	// first probe after 7200 s but the aws-nat-gateway forgets after 350 s
}
