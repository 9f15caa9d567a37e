package lab

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/keepalive-dev/keepalive"
)

// Cell is one scenario × mode combination of a matrix.
type Cell struct {
	Scenario Scenario `json:"scenario"`
	Variant  string   `json:"variant,omitempty"` // NAT: "drop" or "rst"
	Mode     string   `json:"mode"`
	// Name labels a cell with its own settings (Config, NATTimeout), e.g. "nat-refresh-rst".
	Name string `json:"name,omitempty"`
	// Config, when set, replaces MatrixOptions.Config for this cell.
	Config *keepalive.Config `json:"config,omitempty"`
	// NATTimeout, when set, is the router's conntrack timeout for this cell.
	NATTimeout time.Duration `json:"nat_timeout,omitempty"`
}

// RefreshCells are the matrix's NAT cells with an interval longer than the NAT timeout:
// idle 1 s, interval 3 s, count 2 behind a 2 s conntrack timeout. The first probe (1 s)
// refreshes the entry, but the next comes one interval later (4 s), after the entry expired
// at 3 s although idle < timeout: a live flow is refreshed every max(idle, interval).
func RefreshCells() []Cell {
	c := keepalive.Config{Idle: time.Second, Interval: 3 * time.Second, Count: 2}
	return []Cell{
		{Scenario: NAT, Variant: "drop", Mode: "kernel", Name: "nat-refresh-drop", Config: &c, NATTimeout: 2 * time.Second},
		{Scenario: NAT, Variant: "rst", Mode: "kernel", Name: "nat-refresh-rst", Config: &c, NATTimeout: 2 * time.Second},
	}
}

// Label renders the scenario with its variant, e.g. "nat-rst".
func (c Cell) Label() string {
	if c.Name != "" {
		return c.Name
	}
	if c.Variant != "" {
		return string(c.Scenario) + "-" + c.Variant
	}
	return string(c.Scenario)
}

// MatrixOptions configure Matrix.
type MatrixOptions struct {
	// Config is the keepalive setting of every run (zero fields: 2 s / 1 s / 3, and for the
	// user-timeout mode idle + interval).
	Config keepalive.Config
	// Modes restricts the modes (default: every detector).
	Modes []string
	// Scenarios restricts the scenarios (default: all, NAT as nat-drop and nat-rst, plus the
	// RefreshCells when Modes is empty too); names as ParseScenario accepts them.
	Scenarios []string
	// Parallel bounds the runs at once (default 8).
	Parallel int
	// Max bounds each run (default: automatic per run, see Options.Max).
	Max time.Duration
	// Retries2 sets net.ipv4.tcp_retries2 in every client namespace (0 keeps 15).
	Retries2 int
	// IPv6 runs every cell over IPv6.
	IPv6 bool
	// HZ is the kernel's CONFIG_HZ for the model (0: detect it once for all cells).
	HZ int
	// HelperPath as in Options.
	HelperPath string
	// OnResult, if set, is called as each run finishes (from several goroutines, serialized).
	OnResult func(done, total int, r Result)
}

// MatrixResult is one cell's outcome.
type MatrixResult struct {
	Cell   Cell   `json:"cell"`
	Result Result `json:"result"`
	// Err is the lab's own failure for this cell, if any.
	Err string `json:"error,omitempty"`
}

// Cells lists the cells of a matrix.
func (m MatrixOptions) Cells() ([]Cell, error) {
	scs := m.Scenarios
	all := len(scs) == 0
	if all {
		scs = VariantNames()
	}
	modes := m.Modes
	if len(modes) == 0 {
		modes = ModeNames()
	}
	var cells []Cell
	for _, s := range scs {
		sc, variant, err := ParseScenario(s)
		if err != nil {
			return nil, err
		}
		variants := []string{variant}
		if all := variantsOf(sc); variant == "" && len(all) > 0 {
			variants = all
		}
		for _, v := range variants {
			for _, mo := range modes {
				if _, err := LookupDetector(mo); err != nil {
					return nil, err
				}
				cells = append(cells, Cell{Scenario: sc, Variant: v, Mode: mo})
			}
		}
	}
	if all && len(m.Modes) == 0 {
		cells = append(cells, RefreshCells()...)
	}
	return cells, nil
}

// Matrix runs every cell with at most Parallel runs at once and returns the results in cell
// order. A cell whose run fails records the error; Matrix itself fails only on bad options
// or when ctx is cancelled.
func Matrix(ctx context.Context, m MatrixOptions) ([]MatrixResult, error) {
	cells, err := m.Cells()
	if err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	par := m.Parallel
	if par == 0 {
		par = 8
	}
	hz := withHZ(ctx, Options{HZ: m.HZ})
	if par < 1 || par > 64 {
		return nil, fmt.Errorf("lab: parallel %d not allowed (allowed: 1..64)", par)
	}
	out := make([]MatrixResult, len(cells))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, c := range cells {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o := Options{Scenario: c.Scenario, NATOnExpiry: c.Variant, Mode: c.Mode, Config: m.Config,
				Max: m.Max, IPv6: m.IPv6, HelperPath: m.HelperPath, Retries2: m.Retries2, NATTimeout: c.NATTimeout,
				HZ: hz.HZ, HZSource: hz.HZSource}
			if c.Config != nil {
				o.Config = *c.Config
			}
			r, err := Run(ctx, o)
			mr := MatrixResult{Cell: c, Result: r}
			if err != nil {
				mr.Err = err.Error()
			}
			mu.Lock()
			out[i] = mr
			done++
			if m.OnResult != nil {
				m.OnResult(done, len(cells), r)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, nil
}

// Agreement counts the runs where the kernel and the model agree, and the runs the lab itself
// could not carry out (Err set; they count as neither).
func Agreement(rs []MatrixResult) (agree, failed int) {
	for _, r := range rs {
		if r.Err != "" {
			failed++
		} else if r.Result.Agree {
			agree++
		}
	}
	return agree, failed
}
