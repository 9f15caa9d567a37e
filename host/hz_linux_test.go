//go:build linux

package host

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseKernelConfigHZ(t *testing.T) {
	for in, want := range map[string]int{
		"# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n": 250,
		"CONFIG_HZ=1000\n": 1000,
		"CONFIG_HZ=100":    100,
	} {
		if got, err := ParseKernelConfigHZ(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("ParseKernelConfigHZ(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "CONFIG_HZ=fast\n", "CONFIG_HZ=0\n", "CONFIG_HZ_250=y\n"} {
		if _, err := ParseKernelConfigHZ(strings.NewReader(in)); err == nil {
			t.Errorf("ParseKernelConfigHZ(%q) accepted", in)
		}
	}
}

func TestHZFromSteps(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		hz   int
		vals []time.Duration
	}{
		{1000, []time.Duration{1000 * ms, 999 * ms, 998 * ms, 996 * ms}},
		{250, []time.Duration{1000 * ms, 996 * ms, 992 * ms, 984 * ms}},
		{100, []time.Duration{1000 * ms, 990 * ms, 980 * ms, 960 * ms}},
		{300, []time.Duration{1000 * ms, 997 * ms, 994 * ms, 990 * ms, 987 * ms}},
		// A busy machine samples sparsely: no two neighbouring jiffies seen.
		{250, []time.Duration{1000 * ms, 992 * ms, 980 * ms, 960 * ms, 948 * ms}},
		{100, []time.Duration{1000 * ms, 980 * ms, 950 * ms, 930 * ms}},
	} {
		hz, vals := tc.hz, tc.vals
		seen := map[time.Duration]bool{}
		for _, v := range vals {
			seen[v] = true
		}
		if got, err := hzFromSteps(seen); err != nil || got != hz {
			t.Errorf("hzFromSteps(%v) = %d, %v; want %d", vals, got, err, hz)
		}
	}
	if _, err := hzFromSteps(map[time.Duration]bool{time.Second: true}); err == nil {
		t.Error("one value accepted")
	}
}

// The inference from the kernel's own timer agrees with the kernel configuration where
// that is readable (these machines: /proc/config.gz, CONFIG_HZ=250).
func TestInferHZMatchesConfig(t *testing.T) {
	got, err := InferHZ(context.Background())
	if err != nil {
		t.Fatalf("InferHZ: %v", err)
	}
	want, err := hzFromConfig("/proc/config.gz", true)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Logf("no /proc/config.gz (%v); inferred HZ %d", err, got)
		}
		return
	}
	if got != want {
		t.Fatalf("InferHZ = %d, /proc/config.gz says %d", got, want)
	}
	tm := DetectTimers(context.Background())
	if tm.HZ != want || tm.HZSource != "/proc/config.gz" {
		t.Fatalf("DetectTimers = %+v", tm)
	}
}

func FuzzParseKernelConfigHZ(f *testing.F) {
	for _, s := range []string{"CONFIG_HZ=250\n", "CONFIG_HZ_1000=y\nCONFIG_HZ=1000", "CONFIG_HZ=", "CONFIG_HZ=99999999999999999999", "# nothing"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hz, err := ParseKernelConfigHZ(strings.NewReader(s))
		if err == nil && (hz < 10 || hz > 10000) {
			t.Fatalf("ParseKernelConfigHZ(%q) = %d without error", s, hz)
		}
	})
}
