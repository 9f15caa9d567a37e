package report

import (
	"fmt"
	"os"
	"time"

	"github.com/keepalive-dev/keepalive/lab"
)

// LabMatrix is the JSON of lab --matrix.
type LabMatrix struct {
	Results []lab.MatrixResult `json:"results"`
	Agree   int                `json:"agree"`
	Total   int                `json:"total"`
	Elapsed time.Duration      `json:"elapsed"`
}

// LabRandom is the JSON of lab --random.
type LabRandom struct {
	Results []lab.MatrixResult `json:"results"`
	Summary lab.RandomSummary  `json:"summary"`
}

// LabSVG writes a lab run's timeline picture to path.
func LabSVG(path string, r lab.Result) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	if err := lab.WriteSVG(fh, r); err != nil {
		fh.Close()
		return fmt.Errorf("--svg %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("--svg %s: %w", path, err)
	}
	return nil
}
