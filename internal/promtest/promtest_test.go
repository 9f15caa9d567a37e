package promtest

import "testing"

func TestSum(t *testing.T) {
	text := "# HELP x y\nkeepalive_connections{risk=\"none\",state=\"established\"} 3\nkeepalive_connections{risk=\"no-keepalive\",state=\"established\"} 2\nkeepalive_connections_at_risk 2\n"
	if s, ok := Sum(text, "keepalive_connections"); !ok || s != 5 {
		t.Errorf("all: %v %v", s, ok)
	}
	if s, ok := Sum(text, "keepalive_connections", `risk="none"`); !ok || s != 3 {
		t.Errorf("risk none: %v %v", s, ok)
	}
	if s, ok := Sum(text, "keepalive_connections_at_risk"); !ok || s != 2 {
		t.Errorf("at risk: %v %v", s, ok)
	}
	if _, ok := Sum(text, "keepalive_missing"); ok {
		t.Error("missing metric found")
	}
}
