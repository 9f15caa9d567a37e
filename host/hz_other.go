//go:build !linux

package host

import (
	"context"

	"github.com/keepalive-dev/keepalive"
)

// DetectTimers learns the kernel's timer parameters; only Linux has them to learn.
func DetectTimers(ctx context.Context) Timers {
	return Timers{HZSource: "unknown: assumed " + itoa(keepalive.DefaultHZ) + " (not Linux)"}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
