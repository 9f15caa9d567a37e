//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

type grpcEP struct{ cc *grpc.ClientConn }

func (g grpcEP) pings() uint64 { return 0 }
func (g grpcEP) dead() bool    { return g.cc.GetState() != connectivity.Ready }

// runGRPC runs grpc-go with keepalive at the same Time/Timeout as the other modes: the client
// pings after Time without activity (grpc-go raises a client Time below 10 s to 10 s), the
// server after 2*Time. Its PINGs are not counted by grpc-go's API; the result estimates them as
// one per client connection per Time (the server's Time is longer, so it does not ping while
// the client does).
func runGRPC(ln net.Listener, d *net.Dialer, pairs int, hbTime, settle, window time.Duration) (result, error) {
	srv := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: serverTime(hbTime), Timeout: 2 * hbTime}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: hbTime / 2, PermitWithoutStream: true}),
	)
	go srv.Serve(ln)
	defer srv.Stop()
	start := time.Now()
	var eps []endpoint
	for i := 0; i < pairs; i++ {
		cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: hbTime, Timeout: 2 * hbTime, PermitWithoutStream: true}),
			grpc.WithIdleTimeout(0),
		)
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		cc.Connect()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				cancel()
				return result{}, fmt.Errorf("grpc pair %d: not ready: %v", i, s)
			}
		}
		cancel()
		eps = append(eps, grpcEP{cc})
	}
	setup := time.Since(start)
	time.Sleep(settle)
	r, err := measure("grpc", pairs, eps, nil, settle, window, setup)
	r.Pings = uint64(float64(pairs) * window.Seconds() / max(hbTime, 10*time.Second).Seconds())
	r.PingsEst = true
	return r, err
}
