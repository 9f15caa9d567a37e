//go:build !linux

package lab

import "context"

// Run builds the topology for o and measures the scenario. Linux only.
func Run(ctx context.Context, o Options) (Result, error) {
	if _, err := o.normalize(); err != nil {
		return Result{}, err
	}
	return Result{}, ErrUnsupportedOS
}

// Leftovers lists what lab runs left behind. Linux only.
func Leftovers() ([]Leftover, error) { return nil, ErrUnsupportedOS }

// Clean removes leftovers of lab runs. Linux only.
func Clean(all bool) (CleanReport, error) { return CleanReport{}, ErrUnsupportedOS }

func preflight() error { return ErrUnsupportedOS }
