// Command cmd prints the keepalive agent dashboard JSON (see package grafana).
package main

import (
	"fmt"
	"os"

	"github.com/keepalive-dev/keepalive/deploy/grafana"
)

func main() {
	b, err := grafana.Dashboard()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
	os.Stdout.Write(b)
}
