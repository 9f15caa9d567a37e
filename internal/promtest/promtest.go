// Package promtest reads samples from a Prometheus text exposition, for the tests of the
// agent, the command and the deployment image.
package promtest

import (
	"strconv"
	"strings"
)

// Sum adds the samples of metric name whose label text contains every one of labels
// (e.g. `risk="none"`); found is false when no sample matched.
func Sum(text, name string, labels ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}
