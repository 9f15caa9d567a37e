package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newProbeCmd is a placeholder until the command lands.
func newProbeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "probe",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("probe is not yet available")
		},
	}
}
