//go:build !linux

package agent

import "time"

// processCPU is not measured here: owner passes are spaced by their wall time.
func processCPU() time.Duration { return 0 }
