package heartbeat

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func testTLSConfigs(t *testing.T) (client, server *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "heartbeat test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func checkTLSExchange(t *testing.T, client, server net.Conn, hbClient *Conn) {
	t.Helper()
	go io.Copy(server, server)
	msg := make([]byte, 70000)
	for i := range msg {
		msg[i] = byte(i)
	}
	go client.Write(msg)
	got := make([]byte, len(msg))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != msg[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if st := hbClient.Stats(); st.PongsReceived == 0 || st.Err != nil {
		t.Fatalf("no heartbeat through TLS: %+v", st)
	}
}

// crypto/tls running over a heartbeat Conn: TLS records travel inside DATA frames.
func TestTLSOverHeartbeat(t *testing.T) {
	ccfg, scfg := testTLSConfigs(t)
	rc, rs := tcpPair(t)
	o := Options{Time: 30 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true}
	hc, err := Client(rc, o)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := Server(rs, o)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(hc, ccfg)
	ts := tls.Server(hs, scfg)
	defer tc.Close()
	defer ts.Close()
	checkTLSExchange(t, tc, ts, hc)
}

// A heartbeat Conn running over crypto/tls: frames travel inside TLS records, and
// UserTimeout reaches the TCP socket under the TLS connection.
func TestHeartbeatOverTLS(t *testing.T) {
	ccfg, scfg := testTLSConfigs(t)
	rc, rs := tcpPair(t)
	tc := tls.Client(rc, ccfg)
	ts := tls.Server(rs, scfg)
	o := Options{Time: 30 * time.Millisecond, Timeout: time.Second, PermitWithoutCalls: true, UserTimeout: true}
	hc, err := Client(tc, o)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := Server(ts, o)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	defer hs.Close()
	checkTLSExchange(t, hc, hs, hc)
}
