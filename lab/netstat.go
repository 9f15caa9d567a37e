package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// parseNetstat finds field in the header/value line pair starting with prefix (the format of
// /proc/net/netstat and /proc/net/snmp).
func parseNetstat(b []byte, prefix, field string) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var header []string
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		fs := strings.Fields(line)
		if header == nil {
			header = fs
			continue
		}
		for i, h := range header {
			if h == field && i < len(fs) {
				v, err := strconv.Atoi(fs[i])
				if err != nil {
					return 0, fmt.Errorf("lab: %s %s: %w", prefix, field, err)
				}
				return v, nil
			}
		}
		return 0, fmt.Errorf("lab: field %s %s not found", prefix, field)
	}
	return 0, fmt.Errorf("lab: section %s not found", prefix)
}
