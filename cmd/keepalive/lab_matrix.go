package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/internal/progress"
	"github.com/keepalive-dev/keepalive/internal/report"
	"github.com/keepalive-dev/keepalive/lab"
)

func labMatrix(ctx context.Context, g *globalOptions, f *labFlags, changed func(string) bool) error {
	for _, n := range []string{"scenario", "mode", "nat-expiry", "svg", "fault-after"} {
		if changed(n) {
			return usagef("--%s cannot be combined with --matrix", n)
		}
	}
	if f.parallel < 1 || f.parallel > 64 {
		return usagef("--parallel %d out of range (allowed: 1..64)", f.parallel)
	}
	cfg := keepalive.Config{Idle: f.idle, Interval: f.interval, Count: f.count, UserTimeout: f.userTimeout}
	if _, err := lab.Predict(lab.Options{Config: cfg, Max: f.max, Retries2: f.retries2}); err != nil {
		return usagef("%v", strings.TrimPrefix(err.Error(), "lab: "))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	prog := progress.New(g.Stderr, progress.DefaultEvery)
	start := time.Now()
	if f.hz != 0 && (f.hz < 10 || f.hz > 10000) {
		return usagef("--hz %d out of range (allowed: 10..10000, typically 100, 250, 300 or 1000)", f.hz)
	}
	m := lab.MatrixOptions{Config: cfg, Parallel: f.parallel, Max: f.max, IPv6: f.ipv6, Retries2: f.retries2, HZ: f.hz}
	if !f.noProgress {
		m.OnResult = func(done, total int, r lab.Result) {
			prog.Show(fmt.Sprintf("matrix: %d/%d runs done, %.0fs elapsed", done, total, time.Since(start).Seconds()))
		}
	}
	rs, err := lab.Matrix(ctx, m)
	prog.Clear()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitError1, err: errors.New("lab matrix interrupted; everything it built was removed")}
		}
		return labAdvice(err)
	}
	out := report.LabMatrix{Results: rs, Total: len(rs), Elapsed: time.Since(start)}
	agree, labErr := lab.Agreement(rs)
	out.Agree = agree
	if g.JSON {
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else {
		if err := lab.WriteMatrix(g.Stdout, rs); err != nil {
			return err
		}
		fmt.Fprintf(g.Stdout, "settings: %s; matrix took %.1fs with %d runs at once\n", cfg, out.Elapsed.Seconds(), f.parallel)
	}
	if labErr > 0 {
		return &exitError{code: exitError1, err: fmt.Errorf("%d of %d lab runs failed", labErr, len(rs))}
	}
	if out.Agree < out.Total {
		return &exitError{code: exitFound}
	}
	return nil
}

func labRandom(ctx context.Context, g *globalOptions, f *labFlags, changed func(string) bool) error {
	for _, n := range []string{"scenario", "mode", "nat-expiry", "svg", "fault-after", "idle", "interval", "count", "user-timeout", "nat-timeout", "max", "retries2", "segments", "parallel"} {
		if changed(n) {
			return usagef("--%s cannot be combined with --random (it picks its own settings)", n)
		}
	}
	if f.random < 1 || f.random > 10000 {
		return usagef("--random %d out of range (allowed: 1..10000)", f.random)
	}
	if f.hz != 0 && (f.hz < 10 || f.hz > 10000) {
		return usagef("--hz %d out of range (allowed: 10..10000, typically 100, 250, 300 or 1000)", f.hz)
	}
	seed := f.seed
	if !changed("seed") {
		seed = time.Now().UnixNano() % 1000000
	}
	if ctx == nil {
		ctx = context.Background()
	}
	prog := progress.New(g.Stderr, progress.DefaultEvery)
	start := time.Now()
	ro := lab.RandomOptions{N: f.random, Seed: seed, IPv6: f.ipv6, HZ: f.hz}
	if !f.noProgress {
		ro.OnResult = func(done, total int, r lab.Result) {
			prog.Show(fmt.Sprintf("random (seed %d): %d/%d runs done, %.0fs elapsed", seed, done, total, time.Since(start).Seconds()))
		}
	}
	rs, sum, err := lab.Random(ctx, ro)
	prog.Clear()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitError1, err: errors.New("lab random interrupted; everything it built was removed")}
		}
		return labAdvice(err)
	}
	if g.JSON {
		if err := g.printJSON(report.LabRandom{Results: rs, Summary: sum}); err != nil {
			return err
		}
	} else if err := lab.WriteRandom(g.Stdout, rs, sum); err != nil {
		return err
	}
	if sum.LabErrors > 0 {
		return &exitError{code: exitError1, err: fmt.Errorf("%d of %d lab runs failed", sum.LabErrors, sum.Total)}
	}
	if sum.Inside < sum.Total {
		return &exitError{code: exitFound}
	}
	return nil
}
