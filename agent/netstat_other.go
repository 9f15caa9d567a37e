//go:build !linux

package agent

import (
	"errors"

	"github.com/keepalive-dev/keepalive/host"
)

func readNetstat(*host.NetNS) ([]byte, error) {
	return nil, errors.ErrUnsupported
}
