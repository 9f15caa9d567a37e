//go:build linux

package clients_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keepalive-dev/keepalive"
)

var testCfg = keepalive.Config{Idle: 37 * time.Second, Interval: 6 * time.Second, Count: 4, UserTimeout: 29 * time.Second}

// need fails under CI=true (where .ci/run installs every prerequisite) and skips otherwise.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing under CI=true: %s", what)
	}
	t.Skipf("skipping: %s", what)
}

// freeAddr returns a free port on a random 127.0.0.x address (x in 100..249).
func freeAddr(t *testing.T) (host string, port int) {
	t.Helper()
	host = fmt.Sprintf("127.0.0.%d", 100+rand.IntN(150))
	ln, err := net.Listen("tcp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return host, port
}

// dialFor wraps keepalive.DialFunc and hands every connection it makes to the test.
func dialFor(t *testing.T) (func(ctx context.Context, network, addr string) (net.Conn, error), <-chan net.Conn) {
	dial := keepalive.DialFunc(testCfg)
	conns := make(chan net.Conn, 16)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			select {
			case conns <- c:
			default:
			}
		}
		return c, err
	}, conns
}

// checkSettings reads the settings back from a socket a client used.
func checkSettings(t *testing.T, what string, c net.Conn) {
	t.Helper()
	got, err := keepalive.Get(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.Config != testCfg {
		t.Errorf("%s connection: %s, want %s", what, got, testCfg)
	}
}

// startProcess runs cmd until the test ends and stops it by its PID (SIGTERM, then SIGKILL).
func startProcess(t *testing.T, cmd *exec.Cmd, logPath string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
}

func waitTCP(t *testing.T, addr, logPath string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("%s did not come up within 30 s; log:\n%s", addr, b)
}

func pgBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

// startPostgres initialises a cluster in a temporary directory and runs it on a free
// loopback port as the "postgres" system user (PostgreSQL refuses to run as root).
func startPostgres(t *testing.T) (connString, sockDir string) {
	t.Helper()
	initdb, postgres := pgBin("initdb"), pgBin("postgres")
	need(t, initdb != "" && postgres != "", "PostgreSQL server binaries (Debian package postgresql)")
	dir := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		need(t, err == nil, "system user postgres (created by the postgresql package)")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The parents of a t.TempDir are private to root; give the server a world-traversable path.
		pub, err := os.MkdirTemp("/tmp", "keepalive-clients-pg-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(pub) })
		dir = pub
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{sock} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			os.Chown(d, int(cred.Uid), int(cred.Gid))
		}
	}
	cmd := exec.Command(initdb, "-D", data, "-U", "test", "--auth=trust", "--no-sync", "-E", "UTF8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	host, port := freeAddr(t)
	cmd = exec.Command(postgres, "-D", data, "-h", host, "-p", strconv.Itoa(port), "-k", sock, "-c", "fsync=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	logPath := filepath.Join(dir, "postgres.log")
	startProcess(t, cmd, logPath)
	waitTCP(t, net.JoinHostPort(host, strconv.Itoa(port)), logPath)
	return fmt.Sprintf("postgres://test@%s:%d/postgres?sslmode=disable&connect_timeout=10", host, port), sock
}

func TestPgx(t *testing.T) {
	connString, sock := startPostgres(t)
	pgcfg, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	dial, conns := dialFor(t)
	pgcfg.DialFunc = dial
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var conn *pgx.Conn
	for i := 0; ; i++ { // the server may still be starting up after it accepts TCP
		conn, err = pgx.ConnectConfig(ctx, pgcfg)
		if err == nil || i == 50 || !strings.Contains(err.Error(), "starting up") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	// The socket pgx reads and writes is the one DialFunc made, with every setting.
	checkSettings(t, "pgx", conn.PgConn().Conn())
	made := false
	for len(conns) > 0 { // earlier attempts may have met a server still starting up
		made = made || <-conns == conn.PgConn().Conn()
	}
	if !made {
		t.Error("pgx uses a connection DialFunc did not make")
	}

	// A Unix-socket host is refused up front: keepalive exists only for TCP.
	ucfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s user=test dbname=postgres port=%d", sock, pgcfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	ucfg.DialFunc = keepalive.DialFunc(testCfg)
	if _, err := pgx.ConnectConfig(ctx, ucfg); !errors.Is(err, keepalive.ErrNotTCP) {
		t.Fatalf("pgx over a Unix socket: %v, want ErrNotTCP", err)
	}
}

func TestRedis(t *testing.T) {
	bin, _ := exec.LookPath("redis-server")
	if bin == "" {
		if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
			bin = "/usr/bin/redis-server"
		}
	}
	need(t, bin != "", "redis-server (Debian package redis-server)")
	dir := t.TempDir()
	host, port := freeAddr(t)
	logPath := filepath.Join(dir, "redis.log")
	startProcess(t, exec.Command(bin, "--bind", host, "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "no"), logPath)
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	waitTCP(t, addr, logPath)

	dial, conns := dialFor(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, Dialer: dial})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET: %q, %v", v, err)
	}
	select {
	case c := <-conns:
		checkSettings(t, "go-redis", c)
	default:
		t.Fatal("Dialer was not called")
	}
}

func TestGRPC(t *testing.T) {
	host, port := freeAddr(t)
	ln, err := keepalive.Listen(context.Background(), "tcp4", net.JoinHostPort(host, strconv.Itoa(port)), testCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()

	dial := keepalive.ContextDialer(testCfg)
	conns := make(chan net.Conn, 4)
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dial(ctx, addr)
			if err == nil {
				conns <- c
			}
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", resp, err)
	}
	checkSettings(t, "grpc", <-conns)
}
