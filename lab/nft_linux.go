//go:build linux

package lab

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nftTable is the name of the table the lab creates inside its namespaces.
const nftTable = Prefix

func nftConn(ns netns.NsHandle) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("lab: nftables: %w", err)
	}
	return c, nil
}

func nftError(step string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
		return &FeatureError{Feature: "nftables (CONFIG_NF_TABLES, nft_ct, nft_masq, nft_reject_inet)", Step: step, Err: err}
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: %s: %v", ErrNotRoot, step, err)
	}
	return fmt.Errorf("lab: %s: %w", step, err)
}

// blackhole installs table inet kalab with input and output chains of policy drop in ns:
// the namespace neither receives nor sends anything (a crashed host). dir selects "in",
// "out" or "both".
func blackhole(ns netns.NsHandle, dir string) error {
	c, err := nftConn(ns)
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable})
	drop := nftables.ChainPolicyDrop
	if dir == "in" || dir == "both" {
		c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	}
	if dir == "out" || dir == "both" {
		c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	}
	if err := c.Flush(); err != nil {
		return nftError("installing drop rules ("+dir+")", err)
	}
	return nil
}

// removeTable deletes table inet kalab in ns (restores connectivity).
func removeTable(ns netns.NsHandle) error {
	c, err := nftConn(ns)
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable})
	if err := c.Flush(); err != nil {
		return nftError("removing table "+nftTable, err)
	}
	return nil
}

// ctInvalid returns the expressions of "ct state invalid".
func ctInvalid() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitINVALID),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ifname pads an interface name for a meta oifname comparison.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// natRouter installs the router's rules: masquerade towards the server, and packets of
// flows conntrack no longer knows (ct state invalid, with nf_conntrack_tcp_loose=0) either
// dropped in forward and input (onExpiry "drop": silent both ways) or answered with a TCP
// RST in forward (onExpiry "rst").
func natRouter(ns netns.NsHandle, serverSide, onExpiry string) error {
	c, err := nftConn(ns)
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(serverSide)},
		&expr.Masq{},
	}})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	if onExpiry == "rst" {
		ex := append(ctInvalid(),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: ex})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(ctInvalid(), &expr.Verdict{Kind: expr.VerdictDrop})})
	if onExpiry != "rst" {
		in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: append(ctInvalid(), &expr.Verdict{Kind: expr.VerdictDrop})})
	}
	if err := c.Flush(); err != nil {
		return nftError("installing the router's masquerade and conntrack rules", err)
	}
	return nil
}
