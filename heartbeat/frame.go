package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the wire-format version carried in the first byte of every frame.
const Version = 1

// HeaderSize is the size of the frame header: version, type and a 16-bit payload length.
const HeaderSize = 4

// MaxPayload is the hard maximum payload of one frame. A header announcing more is a protocol
// error; Write splits larger buffers into several DATA frames.
const MaxPayload = 16384

// MaxReason is the maximum length in bytes of a GOAWAY reason.
const MaxReason = 28

// pingPayload is the payload size of PING and PONG: id (8 bytes) and time (8 bytes).
const pingPayload = 16

// maxControl is the largest control-frame payload (GOAWAY with the longest reason).
const maxControl = 4 + MaxReason

// FrameType identifies what a frame carries.
type FrameType uint8

// The frame types.
const (
	// FrameData carries 1..MaxPayload bytes of application data.
	FrameData FrameType = 0
	// FramePing asks the peer for a PONG; payload: id and the sender's send time.
	FramePing FrameType = 1
	// FramePong answers a PING; payload: the PING's id and its send time, echoed unchanged.
	FramePong FrameType = 2
	// FrameGoAway announces that the sender closes the connection; payload: code and reason.
	FrameGoAway FrameType = 3
)

// String returns the frame type's name as used in the protocol document.
func (t FrameType) String() string {
	switch t {
	case FrameData:
		return "DATA"
	case FramePing:
		return "PING"
	case FramePong:
		return "PONG"
	case FrameGoAway:
		return "GOAWAY"
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// GOAWAY codes.
const (
	// CodeNoError: orderly shutdown.
	CodeNoError uint32 = 0
	// CodeProtocolError: the peer sent a malformed frame.
	CodeProtocolError uint32 = 1
	// CodeTooManyPings: the peer pinged more often than the enforcement policy allows; the
	// reason is "too_many_pings" (as gRPC's ENHANCE_YOUR_CALM).
	CodeTooManyPings uint32 = 11
)

// ReasonTooManyPings is the GOAWAY reason sent to a peer that violated the EnforcementPolicy.
const ReasonTooManyPings = "too_many_pings"

// Frame is one decoded frame. Which fields are meaningful depends on Type.
type Frame struct {
	Type FrameType
	// Payload is the application data of a DATA frame (aliases the decoded buffer).
	Payload []byte
	// ID identifies a PING and the PONG that answers it.
	ID uint64
	// Time is the PING sender's clock reading (nanoseconds, opaque to the receiver), echoed in
	// the PONG.
	Time int64
	// Code and Reason are the GOAWAY code and human-readable reason.
	Code   uint32
	Reason string
}

// Decoding errors. Every error returned by ParseFrame or by a Conn for a malformed stream
// matches ErrProtocol.
var (
	// ErrProtocol is matched by every malformed-frame error.
	ErrProtocol = errors.New("heartbeat: protocol error")
	// ErrShortFrame means the buffer ends before the frame does; read more and retry.
	ErrShortFrame = errors.New("heartbeat: incomplete frame")
)

// FrameError describes a malformed frame.
type FrameError struct {
	// Field is the offending header field: "version", "type", "length".
	Field string
	// Value is the offending value.
	Value int
	// Allowed is the allowed range or set of values.
	Allowed string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("heartbeat: protocol error: frame %s %d (allowed %s)", e.Field, e.Value, e.Allowed)
}

// Unwrap makes the error match ErrProtocol.
func (e *FrameError) Unwrap() error { return ErrProtocol }

// checkHeader validates a 4-byte header and returns the type and payload length.
func checkHeader(h []byte) (FrameType, int, error) {
	if h[0] != Version {
		return 0, 0, &FrameError{Field: "version", Value: int(h[0]), Allowed: "1"}
	}
	t := FrameType(h[1])
	n := int(binary.BigEndian.Uint16(h[2:4]))
	switch t {
	case FrameData:
		if n < 1 || n > MaxPayload {
			return 0, 0, &FrameError{Field: "length", Value: n, Allowed: fmt.Sprintf("1..%d for DATA", MaxPayload)}
		}
	case FramePing, FramePong:
		if n != pingPayload {
			return 0, 0, &FrameError{Field: "length", Value: n, Allowed: fmt.Sprintf("%d for %s", pingPayload, t)}
		}
	case FrameGoAway:
		if n < 4 || n > maxControl {
			return 0, 0, &FrameError{Field: "length", Value: n, Allowed: fmt.Sprintf("4..%d for GOAWAY", maxControl)}
		}
	default:
		return 0, 0, &FrameError{Field: "type", Value: int(h[1]), Allowed: "0 DATA, 1 PING, 2 PONG, 3 GOAWAY"}
	}
	return t, n, nil
}

func putHeader(b []byte, t FrameType, n int) {
	b[0] = Version
	b[1] = byte(t)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
}

func putPing(b []byte, t FrameType, id uint64, ts int64) {
	putHeader(b, t, pingPayload)
	binary.BigEndian.PutUint64(b[4:12], id)
	binary.BigEndian.PutUint64(b[12:20], uint64(ts))
}

// ParseFrame decodes the frame at the start of b and returns it with the number of bytes it
// occupies. It returns ErrShortFrame when b holds only part of a frame, and an error matching
// ErrProtocol for a malformed one. It never reads past the announced length and never
// allocates more than MaxReason bytes.
func ParseFrame(b []byte) (Frame, int, error) {
	if len(b) < HeaderSize {
		return Frame{}, 0, ErrShortFrame
	}
	t, n, err := checkHeader(b)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < HeaderSize+n {
		return Frame{}, 0, ErrShortFrame
	}
	p := b[HeaderSize : HeaderSize+n]
	f := Frame{Type: t}
	switch t {
	case FrameData:
		f.Payload = p
	case FramePing, FramePong:
		f.ID = binary.BigEndian.Uint64(p[0:8])
		f.Time = int64(binary.BigEndian.Uint64(p[8:16]))
	case FrameGoAway:
		f.Code = binary.BigEndian.Uint32(p[0:4])
		f.Reason = string(p[4:])
	}
	return f, HeaderSize + n, nil
}

// AppendFrame appends the encoding of f to dst. It rejects an empty or oversize DATA payload
// and a GOAWAY reason longer than MaxReason.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	var h [HeaderSize + pingPayload]byte
	switch f.Type {
	case FrameData:
		if len(f.Payload) < 1 || len(f.Payload) > MaxPayload {
			return dst, fmt.Errorf("heartbeat: DATA payload of %d bytes (allowed 1..%d)", len(f.Payload), MaxPayload)
		}
		putHeader(h[:], FrameData, len(f.Payload))
		dst = append(dst, h[:HeaderSize]...)
		return append(dst, f.Payload...), nil
	case FramePing, FramePong:
		putPing(h[:], f.Type, f.ID, f.Time)
		return append(dst, h[:]...), nil
	case FrameGoAway:
		if len(f.Reason) > MaxReason {
			return dst, fmt.Errorf("heartbeat: GOAWAY reason of %d bytes (allowed 0..%d)", len(f.Reason), MaxReason)
		}
		putHeader(h[:], FrameGoAway, 4+len(f.Reason))
		binary.BigEndian.PutUint32(h[4:8], f.Code)
		dst = append(dst, h[:8]...)
		return append(dst, f.Reason...), nil
	}
	return dst, fmt.Errorf("heartbeat: frame type %d (allowed 0 DATA, 1 PING, 2 PONG, 3 GOAWAY)", uint8(f.Type))
}
