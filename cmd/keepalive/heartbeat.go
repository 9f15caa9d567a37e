package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newHeartbeatCmd is a placeholder until the command lands.
func newHeartbeatCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "heartbeat",
		Short:  "not yet available",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("heartbeat is not yet available")
		},
	}
}
