package lab

// Leftover is one object a lab run created and did not remove.
type Leftover struct {
	// Kind is "netns", "link" or "nft".
	Kind string `json:"kind"`
	// Name is the namespace, interface or table name.
	Name string `json:"name"`
	// PID is the lab process that created it (0 when unknown); for an interface or table
	// whose creator cannot be told, a lab process that is running.
	PID int `json:"pid,omitempty"`
	// State is "stale" for a /var/run/netns entry that holds no namespace (or one hidden by a
	// later mount of the directory), "" otherwise.
	State string `json:"state,omitempty"`

	family uint8 // nftables table family (Kind "nft")
}

// String renders the leftover as "KIND NAME", e.g. "netns kalab-123-ab12cd-c", with its state
// in parentheses when it has one ("(stale)").
func (l Leftover) String() string {
	if l.State != "" {
		return l.Kind + " " + l.Name + " (" + l.State + ")"
	}
	return l.Kind + " " + l.Name
}

// CleanReport is what Clean did.
type CleanReport struct {
	// Removed lists what was deleted.
	Removed []Leftover `json:"removed"`
	// Skipped lists what belongs to lab processes that are still running.
	Skipped []Leftover `json:"skipped,omitempty"`
	// Failed lists what could not be removed, with the reason and the fix.
	Failed []CleanFailure `json:"failed,omitempty"`
}

// CleanFailure is a leftover Clean could not remove.
type CleanFailure struct {
	Leftover
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
}
