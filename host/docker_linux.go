//go:build linux

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DockerSocket is where the Docker engine listens by default.
const DockerSocket = "/var/run/docker.sock"

// ErrNoContainer: no container has the name asked for.
var ErrNoContainer = errors.New("no such container")

// DockerContainerID asks the Docker engine at socket (DockerSocket when "") for the full ID
// of the container called name (as 'docker ps' shows it), for selectors that take IDs.
func DockerContainerID(ctx context.Context, socket, name string) (string, error) {
	if socket == "" {
		socket = DockerSocket
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+url.PathEscape(name)+"/json", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("host: container %q: ask the Docker engine at %s: %w", name, socket, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", fmt.Errorf("host: container %q: %w (docker ps lists the running ones)", name, ErrNoContainer)
	default:
		return "", fmt.Errorf("host: container %q: the Docker engine answered %s", name, resp.Status)
	}
	var v struct {
		ID string `json:"Id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 4<<20)).Decode(&v); err != nil {
		return "", fmt.Errorf("host: container %q: Docker engine reply: %w", name, err)
	}
	if !isHexID(v.ID) {
		return "", fmt.Errorf("host: container %q: the Docker engine returned ID %q", name, v.ID)
	}
	return v.ID, nil
}
