package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHeartbeatConnectNotAServer points 'heartbeat connect' at things that are no heartbeat
// server: an HTTP server that waits for a request line, one that answers garbage with a
// response, and one that closes at once. Each is reported as such, once, with exit status 1
// (not "dead peer", exit 3).
func TestHeartbeatConnectNotAServer(t *testing.T) {
	b := hbBuild(t)
	httpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(httpSrv.Close)
	answering, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { answering.Close() })
	go func() {
		for {
			c, err := answering.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Read(make([]byte, 64))
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
				c.Close()
			}()
		}
	}()
	closing, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closing.Close() })
	go func() {
		for {
			c, err := closing.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct{ name, addr string }{
		{"silent-http", strings.TrimPrefix(httpSrv.URL, "http://")},
		{"answers-garbage", answering.Addr().String()},
		{"closes", closing.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code, _ := b.run(t, "heartbeat", "connect", tc.addr, "--time", "100ms", "--timeout", "400ms")
			all := out + errOut
			if code != 1 || !strings.Contains(all, "is not a heartbeat server") || strings.Contains(all, "hung") {
				t.Fatalf("exit %d (want 1):\n%s%s", code, out, errOut)
			}
			if n := strings.Count(all, "not a heartbeat server"); n != 1 {
				t.Fatalf("reason printed %d times:\n%s%s", n, out, errOut)
			}
		})
	}
}
