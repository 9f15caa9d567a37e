package clients_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keepalive-dev/keepalive"
)

// A dead PostgreSQL server is noticed within about 60 s of silence, and a query stuck on
// unacknowledged data after 60 s.
var cfg = keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: time.Minute}

// pgx: set the connection config's DialFunc.
func Example_pgx() {
	pgcfg, err := pgx.ParseConfig("postgres://app@127.0.0.1:5432/app")
	if err != nil {
		fmt.Println(err)
		return
	}
	pgcfg.DialFunc = keepalive.DialFunc(cfg)
	conn, err := pgx.ConnectConfig(context.Background(), pgcfg)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer conn.Close(context.Background())
}

// go-redis: set Options.Dialer.
func Example_redis() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", Dialer: keepalive.DialFunc(cfg)})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		fmt.Println("ping:", err)
	}
}

// grpc-go: grpc.WithContextDialer takes ContextDialer's func(ctx, address) shape.
func Example_grpc() {
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(keepalive.ContextDialer(cfg)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
}
