package caller

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The cost of naming a caller, paid once per connection, never per request
// (BenchmarkFromContext is the per-request part). Each benchmark identifies
// the same open connection over and over; the client is this process, so
// for TCP the /proc search reads the files of the processes of this uid
// that are newer than this one. Measured on the 2-core CI machine while it
// was busy (load average 12), in µs per connection:
//
//	unix socket, everything (SO_PEERCRED, pidfd, exe)      9–29
//	TCP, uid only (sock_diag: UserFromContext)             19–25
//	TCP with the process, found before (hinted)            ~140
//	TCP with the process, first time (cold)                3,600–12,000
//	search of /proc that finds nothing, per file read      5–7
//	FromContext once the connection is identified          0.04–0.05 (per request)

func BenchmarkIdentifyUnix(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "bench.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	benchIdentify(b, ln, "unix", sock, false)
}

// BenchmarkIdentifyTCP: "hinted" is a process that was found before (a
// client with a connection pool, or without keep-alive); "cold" is the first
// connection of a process, searched for newest process first.
func BenchmarkIdentifyTCP(b *testing.B) {
	for _, cold := range []bool{false, true} {
		name := "hinted"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			benchIdentify(b, ln, "tcp", ln.Addr().String(), cold)
		})
	}
}

func benchIdentify(b *testing.B, ln net.Listener, network, addr string, cold bool) {
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
		if cold {
			lastPIDs.Lock()
			clear(lastPIDs.m)
			lastPIDs.Unlock()
		}
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
