package lab

import "time"

// Crash: the server host vanishes; all its traffic is silently dropped.
type crashScenario struct{ baseScenario }

func (crashScenario) id() Scenario          { return Crash }
func (crashScenario) spellings() []spelling { return []spelling{{name: "crash"}} }
func (crashScenario) describe() string {
	return "the server host vanishes: all its traffic silently dropped"
}
func (s crashScenario) help() string { return s.describe() }
func (crashScenario) inject(f faults) (time.Time, error) {
	if err := f.blackholeServer("both"); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
func (crashScenario) faultText(Options) string {
	return "server namespace drops everything in and out (nftables policy drop)"
}
