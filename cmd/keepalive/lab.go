package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newLabCmd is a placeholder until the command lands.
func newLabCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "lab",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("lab is not yet available")
		},
	}
}
