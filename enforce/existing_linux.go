//go:build linux

package enforce

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/keepalive-dev/keepalive"
	"github.com/keepalive-dev/keepalive/host"
)

// RetrofitExisting applies the policy in force (as the programs would choose it) to the
// established connections that the processes of the cgroup and its descendants already
// hold, through host.Retrofit (pidfd_getfd; see package host). Attach covers new
// connections; this covers the ones opened before it. Connections to which no policy
// applies are left alone. With opt.DryRun nothing is changed and the results say what would
// be; opt.Pending are rules of this cgroup to take into account as if attached (a dry run of
// an attach).
func (h *Host) RetrofitExisting(ctx context.Context, cgroupPath string, opt ExistingOptions) ([]host.RetrofitResult, error) {
	cg, err := resolveCgroup(h.cgMount, cgroupPath)
	if err != nil {
		return nil, err
	}
	atts, err := h.List()
	if err != nil {
		return nil, err
	}
	if len(opt.Pending) > 0 {
		i := slices.IndexFunc(atts, func(a Attachment) bool { return a.Cgroup == cg.Rel })
		if i < 0 {
			atts = append(atts, Attachment{Cgroup: cg.Rel, CgroupID: cg.ID})
			i = len(atts) - 1
		}
		for _, p := range opt.Pending {
			atts[i].Rules = slices.DeleteFunc(atts[i].Rules, func(r Rule) bool { return r.Match == p.Match })
			atts[i].Rules = append(atts[i].Rules, p)
		}
		slices.SortStableFunc(atts[i].Rules, func(a, b Rule) int { return rank(a.Match) - rank(b.Match) })
	}
	pidCg := map[int]string{}
	err = filepath.WalkDir(cg.Abs, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(h.cgMount, p)
		rel = filepath.Clean("/" + rel)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pidCg[pid] = rel
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read processes of cgroup %s: %w", cg.Rel, err)
	}
	if len(pidCg) == 0 {
		return nil, nil
	}
	pids := make([]int, 0, len(pidCg))
	for p := range pidCg {
		pids = append(pids, p)
	}
	socks, err := host.List(ctx, host.ListOptions{Owners: true, NoInfo: true,
		Selector: host.Selector{PIDs: pids, States: []host.State{host.StateEstablished}}})
	if err != nil {
		return nil, fmt.Errorf("list connections of cgroup %s: %w", cg.Rel, err)
	}
	groups := map[keepalive.Config][]host.Socket{}
	var order []keepalive.Config
	for _, s := range socks {
		path := ""
		for _, o := range s.Owners {
			if p, ok := pidCg[o.PID]; ok {
				path = p
				break
			}
		}
		if path == "" {
			continue
		}
		r, _, ok := PolicyFor(atts, path, s.Local, s.Remote)
		if !ok {
			continue
		}
		if _, seen := groups[r.Config]; !seen {
			order = append(order, r.Config)
		}
		groups[r.Config] = append(groups[r.Config], s)
	}
	var out []host.RetrofitResult
	for _, c := range order {
		out = append(out, host.Retrofit(ctx, groups[c], c, host.RetrofitOptions{DryRun: opt.DryRun})...)
	}
	return out, nil
}
