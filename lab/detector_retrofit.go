package lab

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

type retrofitDetector struct{}

func (retrofitDetector) Name() string { return "retrofit" }
func (retrofitDetector) Describe() string {
	return "keepalive set from outside the application through pidfd_getfd (keepalive enable), --idle, --interval, --count"
}

// Predict: once retrofitted, the socket behaves exactly like kernel keepalive.
func (retrofitDetector) Predict(in PredictInput) keepalive.Timeline {
	in.Model.KeepaliveOff = false
	in.Model.Config.UserTimeout = 0
	return PredictKernel(in)
}

// Attach finds the client's socket with sock_diag, retrofits it through the owning process
// (this one) and checks the settings read back.
func (retrofitDetector) Attach(ctx context.Context, s *Session) (func(), error) {
	cfg := s.Options.Config
	cfg.UserTimeout = 0
	socks, err := host.List(ctx, host.ListOptions{
		NetNS:    filepath.Base(s.Namespace),
		Selector: host.Selector{Ports: []uint16{s.Local.Port()}},
		Owners:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: retrofit: list sockets: %w", err)
	}
	var target []host.Socket
	for _, so := range socks {
		if so.Local == s.Local && so.Remote == s.Remote {
			target = append(target, so)
		}
	}
	if len(target) != 1 {
		return nil, fmt.Errorf("lab: retrofit: found %d sockets for %s → %s, want 1", len(target), s.Local, s.Remote)
	}
	res := host.Retrofit(ctx, target, cfg, host.RetrofitOptions{})
	if len(res) != 1 || res[0].Err != nil {
		return nil, fmt.Errorf("lab: retrofit: %v", res)
	}
	got, err := keepalive.Get(s.Conn)
	if err != nil {
		return nil, fmt.Errorf("lab: retrofit: read back: %w", err)
	}
	if want := host.Merge(res[0].Before, cfg); got != want {
		return nil, fmt.Errorf("lab: retrofit: the application's socket has %s, want %s", got, want)
	}
	return func() {}, nil
}
