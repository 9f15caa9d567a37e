package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newReapCmd is a placeholder until the command lands.
func newReapCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "reap",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("reap is not yet available")
		},
	}
}
