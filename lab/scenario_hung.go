package lab

import "time"

// Hung: the server process is frozen with SIGSTOP; its kernel keeps answering.
type hungScenario struct{ baseScenario }

func (hungScenario) id() Scenario          { return Hung }
func (hungScenario) spellings() []spelling { return []spelling{{name: "hung"}} }
func (hungScenario) describe() string {
	return "the server process is frozen (SIGSTOP); its kernel still ACKs"
}
func (hungScenario) help() string {
	return "the server process is frozen (SIGSTOP): its kernel still answers probes,\nso kernel keepalive cannot see it"
}
func (hungScenario) inject(f faults) (time.Time, error) {
	if err := f.stopServer(); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
func (hungScenario) faultText(Options) string { return "server process stopped (SIGSTOP)" }
