package report

import (
	"fmt"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

// plural renders "1 connection" / "2 connections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Dur renders a duration compactly: "7200s", "1.5s", "250ms", "-" for zero.
func Dur(d time.Duration) string { return auditDur(d) }

// SettingsText renders keepalive settings as audit's KEEPALIVE column does:
// "60s/10s/3 ut45s", "off".
func SettingsText(s keepalive.Settings) string {
	return auditKAText(auditKA{known: true, enabled: s.Enabled, cfg: s.Config})
}

// Owners renders a socket's owners as "pid/comm,pid/comm" ("-" when none).
func Owners(owners []host.Owner) string { return auditProcText(owners) }
