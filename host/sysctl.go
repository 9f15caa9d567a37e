package host

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Sysctl holds the system-wide TCP settings of one Linux network namespace that decide when
// a dead peer is noticed. They are per network namespace: a new namespace starts at the
// kernel defaults (7200/75/9), not at the host's values.
type Sysctl struct {
	// NetNS is the namespace name ("" for the current one).
	NetNS string `json:"netns,omitempty"`
	// Keepalive holds net.ipv4.tcp_keepalive_time, _intvl and _probes.
	Keepalive keepalive.Config `json:"keepalive"`
	// Retries2 is net.ipv4.tcp_retries2 (how long unacknowledged data is retransmitted).
	Retries2 int `json:"retries2"`
	// InvalidRatelimit is net.ipv4.tcp_invalid_ratelimit.
	InvalidRatelimit time.Duration `json:"invalid_ratelimit"`
	// RTOMin and RTOMax are net.ipv4.tcp_rto_min_us and net.ipv4.tcp_rto_max_ms, the bounds
	// of the retransmission timeout in force for data in flight; zero on kernels without
	// these sysctls (fixed 200 ms and 120 s there).
	RTOMin time.Duration `json:"rto_min,omitempty"`
	RTOMax time.Duration `json:"rto_max,omitempty"`
}

// SysctlKeys are the sysctl names, in the order PersistFile writes them.
func sysctlKeys() [3]string {
	return [3]string{"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
}

// DefaultPersistPath is where PersistFile's content is written by default.
const DefaultPersistPath = "/etc/sysctl.d/60-keepalive.conf"

// SysctlDirs are the directories systemd-sysctl reads *.conf files from at boot, in its
// order of precedence (sysctl.d(5)); /etc/sysctl.conf is read too.
func SysctlDirs() []string {
	return []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}
}

// AppliedAtBoot reports whether systemd-sysctl reads the file at path at boot: a *.conf file
// directly in one of SysctlDirs, or /etc/sysctl.conf. (/run/sysctl.d does not survive a
// reboot, so a file there applies at the next start of systemd-sysctl only.)
func AppliedAtBoot(path string) bool {
	clean := filepath.Clean(path)
	if clean == "/etc/sysctl.conf" {
		return true
	}
	if !strings.HasSuffix(clean, ".conf") {
		return false
	}
	dir := filepath.Dir(clean)
	for _, d := range SysctlDirs() {
		if d == dir && d != "/run/sysctl.d" {
			return true
		}
	}
	return false
}

// SysctlLines renders cfg's non-zero fields as sysctl.conf lines.
func SysctlLines(cfg keepalive.Config) []string {
	k := sysctlKeys()
	var out []string
	if cfg.Idle > 0 {
		out = append(out, fmt.Sprintf("%s = %d", k[0], int(cfg.Idle/time.Second)))
	}
	if cfg.Interval > 0 {
		out = append(out, fmt.Sprintf("%s = %d", k[1], int(cfg.Interval/time.Second)))
	}
	if cfg.Count > 0 {
		out = append(out, fmt.Sprintf("%s = %d", k[2], cfg.Count))
	}
	return out
}

// PersistFile returns the content of a sysctl.d file that sets cfg at boot.
func PersistFile(cfg keepalive.Config) string {
	var b strings.Builder
	b.WriteString("# Written by keepalive sysctl set --persist.\n")
	b.WriteString("# System-wide TCP keepalive defaults. They apply only to sockets that enable\n")
	b.WriteString("# SO_KEEPALIVE and never set their own values: every application must still\n")
	b.WriteString("# turn keepalive on for its sockets (or use 'keepalive enable' on running ones).\n")
	d, _ := keepalive.DetectionTime(cfg, keepalive.ScenarioSilent)
	fmt.Fprintf(&b, "# A silent peer is noticed after %s (idle + count × interval).\n", keepalive.HumanDuration(d))
	for _, l := range SysctlLines(cfg) {
		b.WriteString(l + "\n")
	}
	return b.String()
}
