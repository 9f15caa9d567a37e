package lab

import (
	"time"

	"github.com/keepalive-dev/keepalive"
)

// smallWrite is the size of the one-segment in-flight write: an application's typical request.
const smallWrite = 100

// InFlight: the server vanishes while the client has unacknowledged data.
type inFlightScenario struct{ baseScenario }

func (inFlightScenario) id() Scenario { return InFlight }
func (inFlightScenario) spellings() []spelling {
	return []spelling{{name: "in-flight"}, {name: "inflight", alias: true}}
}
func (inFlightScenario) describe() string {
	return "the server vanishes while the client has unacknowledged data"
}
func (inFlightScenario) help() string {
	return "the server vanishes while the client has unacknowledged data: keepalive\nsends no probes; tcp_retries2 (~15 min) or TCP_USER_TIMEOUT decides"
}
func (inFlightScenario) inFlight() bool { return true }
func (inFlightScenario) model(_ Options, m *keepalive.Model) {
	m.Scenario = keepalive.ScenarioInFlight
}

// inject blackholes the server, then writes: one segment is a small write, several are that
// many full-sized segments, all sent at once within the initial congestion window.
func (inFlightScenario) inject(f faults) (time.Time, error) {
	if err := f.blackholeServer("both"); err != nil {
		return time.Time{}, err
	}
	n := smallWrite
	if s := f.options().Segments; s > 1 {
		n = s * f.segmentSize()
	}
	return f.clientWrite(n)
}
func (inFlightScenario) faultText(Options) string {
	return "server namespace drops everything in and out"
}
