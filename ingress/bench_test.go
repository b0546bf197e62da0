package ingress

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkNewConnection is what a new client connection costs until its
// first gRPC answer: TLS handshake, the mux's look at the first request,
// the call. "direct" is grpc-go serving TLS itself, for comparison.
//
//	go test ./ingress -run '^$' -bench NewConnection -benchtime 300x
func BenchmarkNewConnection(b *testing.B) {
	cert, pool := testCertTB(b)
	serverConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	client := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	b.Run("mux", func(b *testing.B) {
		m := startMux(b, serverConf)
		benchCalls(b, m.mux.Addr().String(), client)
	})
	b.Run("direct", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverConf)))
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go gs.Serve(ln)
		defer gs.Stop()
		benchCalls(b, ln.Addr().String(), client)
	})
}

func benchCalls(b *testing.B, addr string, creds credentials.TransportCredentials) {
	b.ReportAllocs()
	for b.Loop() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
