package host

import "testing"

func FuzzParseState(f *testing.F) {
	for _, s := range []string{"established", "ESTAB", "time_wait", "Listen", "", "fin-wait-2", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := ParseState(in)
		if err == nil {
			// Whatever parses must round-trip through its name.
			back, err := ParseState(st.String())
			if err != nil || back != st {
				t.Fatalf("%q → %v → %v, %v", in, st, back, err)
			}
		}
	})
}
