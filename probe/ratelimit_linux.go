package probe

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// InvalidRateLimit reads net.ipv4.tcp_invalid_ratelimit (ms) of the named
// network namespace ("" for the current one): the local kernel answers at
// most one zero-length out-of-window segment per socket in that time. The
// sysctl is per namespace, so it is read from a thread inside it.
func InvalidRateLimit(netns string) (time.Duration, error) {
	var d time.Duration
	read := func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_invalid_ratelimit")
		if err != nil {
			return err
		}
		ms, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || ms < 0 || ms > int64(MaxInterval/time.Millisecond) {
			return fmt.Errorf("net.ipv4.tcp_invalid_ratelimit = %q: not a number of milliseconds in 0..%d", strings.TrimSpace(string(b)), MaxInterval/time.Millisecond)
		}
		d = time.Duration(ms) * time.Millisecond
		return nil
	}
	var err error
	if netns == "" {
		err = read()
	} else {
		err = inNetns(netns, read)
	}
	if err != nil {
		return 0, fmt.Errorf("read net.ipv4.tcp_invalid_ratelimit: %w", err)
	}
	return d, nil
}
