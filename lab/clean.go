package lab

// Leftover is one object a lab run created and did not remove.
type Leftover struct {
	// Kind is "netns", "link" or "nft".
	Kind string `json:"kind"`
	// Name is the namespace, interface or table name.
	Name string `json:"name"`
	// PID is the lab process that created a namespace (0 when unknown).
	PID int `json:"pid,omitempty"`

	family uint8 // nftables table family (Kind "nft")
}

// String renders the leftover as "KIND NAME", e.g. "netns kalab-123-ab12cd-c".
func (l Leftover) String() string { return l.Kind + " " + l.Name }

// CleanReport is what Clean did.
type CleanReport struct {
	// Removed lists what was deleted.
	Removed []Leftover `json:"removed"`
	// Skipped lists namespaces of lab processes that are still running.
	Skipped []Leftover `json:"skipped,omitempty"`
}
