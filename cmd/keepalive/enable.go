package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newEnableCmd is a placeholder until the command lands.
func newEnableCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "enable",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("enable is not yet available")
		},
	}
}
