package caller

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The cost of naming a caller, paid once per connection. Each benchmark
// identifies the same open connection over and over; the client is this
// process, so for TCP the /proc scan reads the files of every process that
// runs as this uid up to this one (report: fds/op). Results are in
// bench/README.md's neighbour, this package's doc: see the report of the
// change that added them.

func BenchmarkIdentifyUnix(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "bench.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	benchIdentify(b, ln, "unix", sock)
}

func BenchmarkIdentifyTCP(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	benchIdentify(b, ln, "tcp", ln.Addr().String())
}

func benchIdentify(b *testing.B, ln net.Listener, network, addr string) {
	client, err := net.Dial(network, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	if c := Identify(server); c.PID != os.Getpid() {
		b.Fatalf("Identify = %v, want this process", c)
	}
	for b.Loop() {
		Identify(server)
	}
}

// BenchmarkTCPTableLookup is the sock_diag part of a TCP lookup alone: the
// uid, without the pid.
func BenchmarkTCPTableLookup(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	self := client.LocalAddr().(*net.TCPAddr).AddrPort()
	peer := server.LocalAddr().(*net.TCPAddr).AddrPort()
	for b.Loop() {
		if _, err := lookupTCP(self, peer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessScan is the worst case of the pid search: an inode no
// process holds, so every file of every process of this uid is read, with
// extra files open in this process to show the cost per file (ns/op ÷
// fds/op).
func BenchmarkProcessScan(b *testing.B) {
	for _, extra := range []int{0, 5000} {
		b.Run("extra_fds="+strconv.Itoa(extra), func(b *testing.B) {
			for range extra {
				f, err := os.Open(os.DevNull)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
			}
			var read int
			for b.Loop() {
				_, read, _ = scanProcesses(^uint32(0), os.Geteuid(), 1<<30)
			}
			b.ReportMetric(float64(read), "fds/op")
		})
	}
}

// BenchmarkFromContext is what every request after a connection's first
// pays: a context lookup and a once-only function that has already run.
func BenchmarkFromContext(b *testing.B) {
	a, c := net.Pipe()
	defer a.Close()
	defer c.Close()
	ctx := ConnContext(context.Background(), a)
	// Like a request context: a few values above the connection's.
	type k int
	for i := range 3 {
		ctx = context.WithValue(ctx, k(i), i)
	}
	FromContext(ctx)
	for b.Loop() {
		FromContext(ctx)
	}
}
