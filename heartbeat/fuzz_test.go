package heartbeat

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// byteConn is a net.Conn whose Read returns a fixed byte stream and whose Write discards.
type byteConn struct {
	r *bytes.Reader
}

func (b *byteConn) Read(p []byte) (int, error)       { return b.r.Read(p) }
func (b *byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (b *byteConn) Close() error                     { return nil }
func (b *byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (b *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (b *byteConn) SetDeadline(time.Time) error      { return nil }
func (b *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (b *byteConn) SetWriteDeadline(time.Time) error { return nil }

func fuzzSeeds() [][]byte {
	ping, _ := AppendFrame(nil, Frame{Type: FramePing, ID: 7, Time: 12345})
	pong, _ := AppendFrame(nil, Frame{Type: FramePong, ID: 7, Time: 12345})
	data, _ := AppendFrame(nil, Frame{Type: FrameData, Payload: []byte("hello")})
	ga, _ := AppendFrame(nil, Frame{Type: FrameGoAway, Code: CodeTooManyPings, Reason: ReasonTooManyPings})
	stream := append(append(append([]byte{}, data...), ping...), pong...)
	return [][]byte{
		nil,
		ping, pong, data, ga, stream,
		data[:6],                         // truncated payload
		{1, 0},                           // truncated header
		{1, 0, 0xff, 0xff},               // huge length
		{1, 1, 0, 200},                   // PING with wrong length
		{2, 0, 0, 1, 'x'},                // wrong version
		{1, 9, 0, 0},                     // unknown type
		{1, 0, 0, 0},                     // empty DATA
		[]byte("GET / HTTP/1.1\r\n\r\n"), // garbage
	}
}

// FuzzDecode feeds arbitrary bytes to ParseFrame and to a Conn reading them as a stream:
// every input must end in data or a clean error, never a panic, with bounded memory.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := ParseFrame(b)
		if err == nil {
			if n < HeaderSize || n > len(b) || n > HeaderSize+MaxPayload {
				t.Fatalf("bad length %d for %d bytes", n, len(b))
			}
			if fr.Type == FrameGoAway && len(fr.Reason) > MaxReason {
				t.Fatalf("reason of %d bytes", len(fr.Reason))
			}
			again, err := AppendFrame(nil, fr)
			if err != nil || !bytes.Equal(again, b[:n]) {
				t.Fatalf("re-encoding %+v: %v %x != %x", fr, err, again, b[:n])
			}
		} else if !errors.Is(err, ErrShortFrame) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("unclassified error %v", err)
		}

		c, err := Wrap(&byteConn{r: bytes.NewReader(b)}, Options{Time: time.Hour, Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 512)
		total := 0
		for i := 0; i < len(b)+2; i++ {
			m, err := c.Read(buf)
			total += m
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrGoAway) && !errors.Is(err, io.ErrNoProgress) {
					t.Fatalf("unclassified read error %v", err)
				}
				break
			}
		}
		if total > len(b) {
			t.Fatalf("read %d bytes out of %d input bytes", total, len(b))
		}
	})
}
