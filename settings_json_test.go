package keepalive

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSettingsJSON checks that Enabled and MPTCP survive encoding: the embedded Config has a
// MarshalJSON of its own, which would otherwise take over and drop them.
func TestSettingsJSON(t *testing.T) {
	s := Settings{Enabled: true, MPTCP: true, Config: Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 1500 * time.Millisecond}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"enabled":true`, `"idle_seconds":60`, `"user_timeout_seconds":1.5`, `"mptcp":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var back Settings
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, s)
	}
}
