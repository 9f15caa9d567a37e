package enforce_test

import (
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/enforce"
)

// Attach a policy to a service's cgroup: every new connection of its processes gets it when
// it is established, and the application's own keepalive calls are rewritten (enforce mode).
func ExampleHost_Attach() {
	h, err := enforce.Open(enforce.Options{MountBPFFS: true})
	if err != nil {
		log.Fatal(err) // names the missing kernel feature, privilege or filesystem
	}
	defer h.Close()
	att, err := h.Attach(enforce.AttachRequest{
		Cgroup: "/system.slice/api.service",
		Rule: enforce.Rule{
			Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 90 * time.Second},
			Mode:   enforce.ModeEnforce,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(att.Cgroup, att.Linked)
}

// A rule for the connections to a database network, beside the cgroup's default.
func ExampleMatch() {
	m := enforce.Match{RemotePort: 5432, Peer: netip.MustParsePrefix("10.0.0.0/8")}
	fmt.Println(m)
	fmt.Println(m.Contains(netip.MustParseAddrPort("10.0.0.9:40000"), netip.MustParseAddrPort("10.1.2.3:5432")))
	// Output:
	// remote port 5432, peer 10.0.0.0/8
	// true
}
