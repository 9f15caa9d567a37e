package host

import "time"

// Timers describes the kernel's timer parameters the detection model (keepalive.Model)
// needs, and where each was learnt.
type Timers struct {
	// HZ is CONFIG_HZ; 0 when it could not be learnt (the model then assumes
	// keepalive.DefaultHZ, the coarsest common value).
	HZ int `json:"hz"`
	// HZSource says where HZ came from: "/proc/config.gz", "/boot/config-<release>",
	// "idiag_expires steps on a loopback socket", "--hz", or "unknown: assumed 100".
	HZSource string `json:"hz_source"`
	// RTOMin and RTOMax are net.ipv4.tcp_rto_min_us and net.ipv4.tcp_rto_max_ms (zero when
	// the kernel has no such sysctl: it then uses the fixed 200 ms and 120 s).
	RTOMin time.Duration `json:"rto_min,omitempty"`
	RTOMax time.Duration `json:"rto_max,omitempty"`
	// RTOSource names the sysctls read, or says they are absent.
	RTOSource string `json:"rto_source,omitempty"`
}
