package nattimeout

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []Frame{
		{Type: TypeHello, A: RoleControl, Data: TokenDigest("s3cret")},
		{Type: TypeTrigger, A: 7, B: 1 << 31},
		{Type: TypeLimits, A: 64, B: 1024, Data: [16]byte{0, 0, 0x1c, 0x20}},
	} {
		b := f.Marshal()
		g, err := Unmarshal(b[:])
		if err != nil || g != f {
			t.Fatalf("round trip %+v: got %+v, %v", f, g, err)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, f); err != nil || buf.Len() != FrameSize {
			t.Fatalf("WriteFrame: %v, %d bytes", err, buf.Len())
		}
		if g, err := ReadFrame(&buf); err != nil || g != f {
			t.Fatalf("ReadFrame: %+v %v", g, err)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good := Frame{Type: TypePing, A: 1}.Marshal()
	cases := map[string]func(b []byte) []byte{
		"short":    func(b []byte) []byte { return b[:31] },
		"long":     func(b []byte) []byte { return append(b, 0) },
		"magic":    func(b []byte) []byte { b[0] = 'X'; return b },
		"version":  func(b []byte) []byte { b[4] = 9; return b },
		"type0":    func(b []byte) []byte { b[5] = 0; return b },
		"type99":   func(b []byte) []byte { b[5] = 99; return b },
		"reserved": func(b []byte) []byte { b[7] = 1; return b },
	}
	for name, mut := range cases {
		b := append([]byte(nil), good[:]...)
		if _, err := Unmarshal(mut(b)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: err %v, want ErrBadFrame", name, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, fr := range []Frame{{Type: TypeHello, A: RoleTest, B: 3}, {Type: TypeResult, A: 1, B: 2, Data: [16]byte{2}}} {
		b := fr.Marshal()
		f.Add(b[:])
	}
	f.Add([]byte("KANT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Unmarshal(b)
		if err != nil {
			return
		}
		out := fr.Marshal()
		if !bytes.Equal(out[:], b) {
			t.Fatalf("decoded %x re-encodes as %x", b, out)
		}
	})
}
