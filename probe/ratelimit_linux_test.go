package probe

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepalive-dev/keepalive/internal/nstest"
)

func TestMinSpacing(t *testing.T) {
	for _, c := range []struct{ local, want time.Duration }{
		{0, 600 * time.Millisecond},                      // unknown: the kernel default
		{100 * time.Millisecond, 600 * time.Millisecond}, // the peer's default still applies
		{500 * time.Millisecond, 600 * time.Millisecond}, // default
		{2 * time.Second, 2100 * time.Millisecond},       // raised here
	} {
		if got := MinSpacing(c.local); got != c.want {
			t.Errorf("MinSpacing(%v) = %v, want %v", c.local, got, c.want)
		}
	}
	if DefaultSpacing != MinSpacing(0) {
		t.Errorf("DefaultSpacing %v != MinSpacing(0) %v", DefaultSpacing, MinSpacing(0))
	}
}

func TestInvalidRateLimit(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_invalid_ratelimit")
	nstest.Need(t, err == nil, fmt.Sprintf("/proc/sys/net/ipv4/tcp_invalid_ratelimit: %v", err))
	ms, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	got, err := InvalidRateLimit("")
	if err != nil || got != time.Duration(ms)*time.Millisecond {
		t.Fatalf("InvalidRateLimit = %v, %v; /proc says %d ms", got, err, ms)
	}
	if _, err := InvalidRateLimit("kaprobe-no-such-namespace"); err == nil {
		t.Error("missing namespace: no error")
	}
}
