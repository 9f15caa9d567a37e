package nattimeout

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameSize is the size of every protocol frame in bytes.
const FrameSize = 32

// Version is the protocol version this package speaks.
const Version = 1

var magic = [4]byte{'K', 'A', 'N', 'T'}

// Type is a frame's type.
type Type uint8

// Frame types.
const (
	// TypeHello opens a connection: A is the role (RoleControl or RoleTest), B the session
	// (test connections), Data the token digest.
	TypeHello Type = 1
	// TypeWelcome accepts a Hello: on a control connection A is the session and B packs the
	// server's limits (see Limits); on a test connection A is the connection's id.
	TypeWelcome Type = 2
	// TypePing asks the peer for a Pong carrying the same A (sequence number).
	TypePing Type = 3
	// TypePong answers a Ping.
	TypePong Type = 4
	// TypeTrigger (control connection, client→server) asks the server to send a Ping with
	// sequence B on test connection A.
	TypeTrigger Type = 5
	// TypeResult (control connection, server→client) reports the outcome of a Trigger: A is
	// the test connection, B the sequence, Data[0] an Outcome.
	TypeResult Type = 6
	// TypeError refuses a request: A is an ErrorCode.
	TypeError Type = 7
	// TypeLimits (control, server→client) follows a Welcome: A is the per-client connection
	// cap, B the total cap, Data[0:4] the idle cap in seconds.
	TypeLimits Type = 8
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeTrigger:
		return "trigger"
	case TypeResult:
		return "result"
	case TypeError:
		return "error"
	case TypeLimits:
		return "limits"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Roles of a connection, in a Hello's A.
const (
	RoleControl = 1
	RoleTest    = 2
)

// ErrorCode is the reason in an error frame.
type ErrorCode uint32

// Error codes.
const (
	ErrCodeToken      ErrorCode = 1 // wrong or missing token
	ErrCodeClientCap  ErrorCode = 2 // too many connections from this address
	ErrCodeTotalCap   ErrorCode = 3 // too many connections in total
	ErrCodeProtocol   ErrorCode = 4 // unexpected or malformed frame
	ErrCodeSession    ErrorCode = 5 // unknown session or connection id
	ErrCodeShutdown   ErrorCode = 6 // server is shutting down
	ErrCodeIdleCapped ErrorCode = 7 // idle longer than the server allows
)

func (c ErrorCode) String() string {
	switch c {
	case ErrCodeToken:
		return "wrong or missing token"
	case ErrCodeClientCap:
		return "too many connections from this address"
	case ErrCodeTotalCap:
		return "server has too many connections"
	case ErrCodeProtocol:
		return "protocol error"
	case ErrCodeSession:
		return "unknown session or connection"
	case ErrCodeShutdown:
		return "server shutting down"
	case ErrCodeIdleCapped:
		return "idle cap reached"
	}
	return fmt.Sprintf("error code %d", uint32(c))
}

// Frame is one protocol message: magic "KANT", version, type, two reserved zero bytes,
// A and B (big-endian uint32) and 16 bytes of Data.
type Frame struct {
	Type Type
	A, B uint32
	Data [16]byte
}

// ErrBadFrame is wrapped by every decoding error.
var ErrBadFrame = errors.New("bad frame")

// Marshal encodes f into its FrameSize bytes.
func (f Frame) Marshal() [FrameSize]byte {
	var b [FrameSize]byte
	copy(b[0:4], magic[:])
	b[4] = Version
	b[5] = byte(f.Type)
	binary.BigEndian.PutUint32(b[8:12], f.A)
	binary.BigEndian.PutUint32(b[12:16], f.B)
	copy(b[16:], f.Data[:])
	return b
}

// Unmarshal decodes exactly FrameSize bytes; it rejects wrong sizes, magic, version,
// unknown types and non-zero reserved bytes.
func Unmarshal(b []byte) (Frame, error) {
	if len(b) != FrameSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadFrame, len(b), FrameSize)
	}
	if [4]byte(b[0:4]) != magic {
		return Frame{}, fmt.Errorf("%w: magic %q, want %q (not a nat-timeout peer?)", ErrBadFrame, b[0:4], magic[:])
	}
	if b[4] != Version {
		return Frame{}, fmt.Errorf("%w: protocol version %d, this side speaks %d", ErrBadFrame, b[4], Version)
	}
	t := Type(b[5])
	if t < TypeHello || t > TypeLimits {
		return Frame{}, fmt.Errorf("%w: unknown type %d (allowed 1..%d)", ErrBadFrame, b[5], TypeLimits)
	}
	if b[6] != 0 || b[7] != 0 {
		return Frame{}, fmt.Errorf("%w: reserved bytes %#x %#x must be zero", ErrBadFrame, b[6], b[7])
	}
	f := Frame{Type: t, A: binary.BigEndian.Uint32(b[8:12]), B: binary.BigEndian.Uint32(b[12:16])}
	copy(f.Data[:], b[16:])
	return f, nil
}

// ReadFrame reads and decodes one frame.
func ReadFrame(r io.Reader) (Frame, error) {
	var b [FrameSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Frame{}, err
	}
	return Unmarshal(b[:])
}

// WriteFrame encodes and writes one frame.
func WriteFrame(w io.Writer, f Frame) error {
	b := f.Marshal()
	_, err := w.Write(b[:])
	return err
}

// TokenDigest is what a Hello carries for a token: the first 16 bytes of its SHA-256.
func TokenDigest(token string) [16]byte {
	s := sha256.Sum256([]byte("keepalive-nat-timeout\x00" + token))
	return [16]byte(s[:16])
}
