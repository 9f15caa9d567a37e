// Package clients shows github.com/keepalive-dev/keepalive with the Go clients developers
// use: pgx (PostgreSQL), go-redis and grpc-go. It is a separate module so that the library
// never depends on these clients; its tests run them against real PostgreSQL and Redis
// servers on loopback and a grpc-go server, and read the settings back from the sockets the
// clients actually use.
package clients
