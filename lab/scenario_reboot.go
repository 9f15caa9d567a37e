package lab

import (
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Reboot: the server forgets the connection without telling the client and answers the
// next segment with RST.
type rebootScenario struct{ baseScenario }

func (rebootScenario) id() Scenario          { return Reboot }
func (rebootScenario) spellings() []spelling { return []spelling{{name: "reboot"}} }
func (rebootScenario) describe() string {
	return "the server forgets the connection and answers the next segment with RST"
}
func (s rebootScenario) help() string { return s.describe() }
func (rebootScenario) model(_ Options, m *keepalive.Model) {
	m.Scenario = keepalive.ScenarioReboot
}

// inject drops the server's outgoing traffic, has the server destroy its socket (so its RST
// is lost) and restores connectivity: the client learns only from its next segment.
func (rebootScenario) inject(f faults) (time.Time, error) {
	if err := f.blackholeServer("out"); err != nil {
		return time.Time{}, err
	}
	if err := f.abortServer(); err != nil {
		return time.Time{}, err
	}
	if err := f.restoreServer(); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
func (rebootScenario) faultText(Options) string {
	return "server socket destroyed with its RST dropped, connectivity restored"
}
