package nattimeout

import (
	"errors"
	"fmt"

	"github.com/keepalive-dev/keepalive"
)

// HeartbeatAdvice is the advice for a path that does not count TCP keepalive probes as
// activity.
const HeartbeatAdvice = keepalive.HeartbeatAdvice

// Advice is what a measurement means for keepalive settings.
type Advice struct {
	// Heartbeat: keepalive does not keep this path's flows; Text says what to do instead.
	Heartbeat bool `json:"heartbeat"`
	// Text is a one-line summary.
	Text string `json:"text"`
	// Requirement is what was passed to keepalive.Recommend, Recommendation its answer (nil
	// when keepalive cannot help or nothing expired).
	Requirement    *keepalive.Requirement    `json:"requirement,omitempty"`
	Recommendation *keepalive.Recommendation `json:"recommendation,omitempty"`
}

// Advise turns a result into advice: keepalive.Recommend for the shortest measured timeout
// when the path counts keepalive probes as activity, HeartbeatAdvice when it does not.
func Advise(r Result) (Advice, error) {
	t := r.Timeout()
	if t == 0 {
		return Advice{Text: fmt.Sprintf("no idle timeout up to %s: keepalive is only needed to detect dead peers (see 'keepalive plan')", r.Max)}, nil
	}
	if r.Keepalive.Tested && !r.Keepalive.Recognised {
		// The recommender gives the same answer for a data-only preset (ErrDataOnly).
		req := keepalive.Requirement{MiddleboxTimeout: t, DataOnly: true}
		if _, err := keepalive.Recommend(req); err != nil && !errors.Is(err, keepalive.ErrDataOnly) {
			return Advice{Requirement: &req}, fmt.Errorf("recommendation for a data-only %s middlebox: %w", t, err)
		}
		return Advice{Heartbeat: true, Text: HeartbeatAdvice, Requirement: &req}, nil
	}
	req := keepalive.Requirement{MiddleboxTimeout: t}
	rec, err := keepalive.Recommend(req)
	if err != nil {
		return Advice{Requirement: &req}, fmt.Errorf("recommendation for a %s middlebox timeout: %w", t, err)
	}
	text := fmt.Sprintf("keep flows through this path with: %s", rec.Config)
	if !r.Keepalive.Tested {
		text += " (keepalive recognition not tested)"
	}
	return Advice{Text: text, Requirement: &req, Recommendation: &rec}, nil
}
