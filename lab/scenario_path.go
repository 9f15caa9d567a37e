package lab

import "time"

// Path: the router's link towards the server goes down (router topology).
type pathScenario struct{ baseScenario }

func (pathScenario) id() Scenario          { return Path }
func (pathScenario) spellings() []spelling { return []spelling{{name: "path"}} }
func (pathScenario) describe() string      { return "the router's link towards the server goes down" }
func (pathScenario) help() string {
	return "the router's link towards the server goes down (router topology)"
}
func (pathScenario) routed() bool { return true }
func (pathScenario) inject(f faults) (time.Time, error) {
	if err := f.routerLinkDown(); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}
func (pathScenario) faultText(Options) string { return "router's link towards the server set down" }
