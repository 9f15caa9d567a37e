package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAuditCmd is a placeholder until the command lands.
func newAuditCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "audit",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("audit is not yet available")
		},
	}
}
