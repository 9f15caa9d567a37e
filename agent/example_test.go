package agent_test

import (
	"fmt"

	"github.com/keepalive-dev/keepalive/agent"
)

func ExampleParsePolicy() {
	p, err := agent.ParsePolicy([]byte(`
rules:
  - name: databases
    match: {ports: [5432]}
    action: enforce
    keepalive: {idle: 60s, interval: 10s, count: 5}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r := p.Rules[0]
	fmt.Println(r.Name, r.Action, r.Keepalive.Idle, p.Budgets.RetrofitsPerSweep)

	_, err = agent.ParsePolicy([]byte("rules:\n  - action: enforce\n"))
	fmt.Println(err)
	// Output:
	// databases enforce 1m0s 200
	// policy line 2: action enforce needs keepalive: {idle, interval, count, user_timeout}
}
