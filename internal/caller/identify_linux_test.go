package caller

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// self is the caller this test process is.
func self(t *testing.T, network string) Caller {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Caller{Known: true, Network: network, UID: os.Geteuid(), GID: os.Getegid(), PID: os.Getpid(),
		User: names.user(os.Geteuid()), Group: names.group(os.Getegid()), Exe: exe}
}

// serverSide dials ln with dial and returns the server's end of the
// connection and the client's.
func serverSide(t *testing.T, ln net.Listener, dial func() (net.Conn, error)) (server, client net.Conn) {
	t.Helper()
	client, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil && network == "tcp6" {
		t.Skipf("SKIP: no IPv6 loopback on this machine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dualStack listens on an IPv6 socket for IPv4 peers (at the v4-mapped
// loopback address, never on every interface), so that the broker's socket
// is IPv6 and its peer's IPv4. Go's net package refuses v4-mapped addresses
// for tcp6, hence the raw socket.
func dualStack(t *testing.T) net.Listener {
	t.Helper()
	fd := mappedSocket(t)
	sa := &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dual-stack listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// mappedDial connects from an IPv6 socket to addr's v4-mapped address.
func mappedDial(t *testing.T, addr netip.AddrPort) (net.Conn, error) {
	fd := mappedSocket(t)
	sa := &unix.SockaddrInet6{Addr: netip.AddrFrom16(addr.Addr().As16()).As16(), Port: int(addr.Port())}
	f := os.NewFile(uintptr(fd), "v4-mapped client")
	defer f.Close()
	if err := unix.Connect(fd, sa); err != nil {
		return nil, err
	}
	return net.FileConn(f)
}

// mappedSocket is an IPv6 TCP socket that may use v4-mapped addresses.
func mappedSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("SKIP: no IPv6 on this machine: %v", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd
}

// TestIdentifySelf connects this process to itself every way the broker
// can be reached and checks that it is named, pid and executable included.
func TestIdentifySelf(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "broker.sock")
	tests := []struct {
		name    string
		network string
		ln      func(t *testing.T) net.Listener
		dial    func(ln net.Listener) (net.Conn, error)
	}{
		{"unix", "unix", func(t *testing.T) net.Listener { return listen(t, "unix", sock) },
			func(ln net.Listener) (net.Conn, error) { return net.Dial("unix", sock) }},
		{"tcp4", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp4", "127.0.0.1:0") },
			func(ln net.Listener) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }},
		{"tcp4 from 127.0.0.2", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp4", "127.0.0.1:0") },
			func(ln net.Listener) (net.Conn, error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
				return d.Dial("tcp", ln.Addr().String())
			}},
		{"tcp6", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp6", "[::1]:0") },
			func(ln net.Listener) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }},
		{"IPv4 peer of an IPv6 socket", "tcp", dualStack,
			func(ln net.Listener) (net.Conn, error) {
				port := ln.Addr().(*net.TCPAddr).Port
				return net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			}},
		{"IPv6 peer with a v4-mapped address", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp4", "127.0.0.1:0") },
			func(ln net.Listener) (net.Conn, error) {
				return mappedDial(t, ln.Addr().(*net.TCPAddr).AddrPort())
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := tt.ln(t)
			server, _ := serverSide(t, ln, func() (net.Conn, error) { return tt.dial(ln) })
			want := self(t, tt.network)
			if diff := cmp.Diff(want, Identify(server)); diff != "" {
				t.Errorf("Identify (-want +got):\n%s", diff)
			}
			ctx := ConnContext(t.Context(), server)
			if tt.network == "tcp" {
				want.GID, want.Group, want.PID, want.Exe = -1, "", -1, ""
			}
			if diff := cmp.Diff(want, UserFromContext(ctx)); diff != "" {
				t.Errorf("UserFromContext (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIdentifyClosedPeer: a peer whose socket is closed by the time the
// broker looks is unknown, not root (the kernel says uid 0 for such sockets).
func TestIdentifyClosedPeer(t *testing.T) {
	ln := listen(t, "tcp4", "127.0.0.1:0")
	server, client := serverSide(t, ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) })
	client.Close()
	if got, want := Identify(server), unknown("tcp"); got != want {
		t.Errorf("Identify after the peer closed = %v, want %v", got, want)
	}
}

// TestIdentifyTCPNotLoopback: a peer on any other address is not looked up.
func TestIdentifyTCPNotLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct{ local, remote string }{
		{"10.0.0.5:8400", "10.0.0.7:41000"},
		{"[::ffff:10.0.0.5]:8400", "[::ffff:10.0.0.7]:41000"},
		{"[2001:db8::5]:8400", "[2001:db8::7]:41000"},
		// Loopback, but no such socket exists.
		{"127.0.0.1:1", "127.0.0.1:2"},
		{"[::1]:1", "[::1]:2"},
	}
	for _, tt := range tests {
		got := identifyTCP(netip.MustParseAddrPort(tt.local), netip.MustParseAddrPort(tt.remote))
		if want := (peer{Caller: unknown("tcp")}); got != want {
			t.Errorf("identifyTCP(%s, %s) = %v, want %v", tt.local, tt.remote, got, want)
		}
	}
}

// diagReply builds a kernel reply naming the socket self→peer.
func diagReply(family, state uint8, self, peer netip.AddrPort, uid, inode uint32) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagMsg+8) // + one attribute
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	m := b[unix.SizeofNlMsghdr:]
	m[0], m[1] = family, state
	if family == unix.AF_INET6 {
		self = netip.AddrPortFrom(netip.AddrFrom16(self.Addr().As16()), self.Port())
		peer = netip.AddrPortFrom(netip.AddrFrom16(peer.Addr().As16()), peer.Port())
	}
	putSockID(m[4:], self, peer)
	ne.PutUint32(m[4+sizeofInetDiagSockID+12:], uid)
	ne.PutUint32(m[4+sizeofInetDiagSockID+16:], inode)
	return b
}

func diagError(errno unix.Errno) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.SizeofNlMsghdr+4+unix.SizeofNlMsghdr)
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NLMSG_ERROR)
	ne.PutUint32(b[unix.SizeofNlMsghdr:], uint32(-int32(errno)))
	return b
}

func TestParseDiagReply(t *testing.T) {
	t.Parallel()
	self := netip.MustParseAddrPort("127.0.0.1:41000")
	peer := netip.MustParseAddrPort("127.0.0.1:8400")
	listener := netip.MustParseAddrPort("0.0.0.0:0")
	const established, timeWait, listen, finWait2 = 1, 6, 10, 5
	tests := []struct {
		name  string
		reply []byte
		want  peerSocket
		err   error
	}{
		{"established", diagReply(unix.AF_INET, established, self, peer, 1001, 777), peerSocket{1001, 777}, nil},
		{"half closed", diagReply(unix.AF_INET, finWait2, self, peer, 1001, 777), peerSocket{1001, 777}, nil},
		{"IPv6 socket with mapped addresses", diagReply(unix.AF_INET6, established, self, peer, 1001, 777), peerSocket{1001, 777}, nil},
		{"time-wait claims root", diagReply(unix.AF_INET, timeWait, self, peer, 0, 0), peerSocket{}, errNoPeer},
		{"orphan", diagReply(unix.AF_INET, finWait2, self, peer, 0, 0), peerSocket{}, errNoPeer},
		{"a listener on the peer's port", diagReply(unix.AF_INET, listen, netip.AddrPortFrom(listener.Addr(), 41000), listener, 0, 99), peerSocket{}, errNoPeer},
		{"another connection", diagReply(unix.AF_INET, established, self, netip.MustParseAddrPort("127.0.0.1:8401"), 0, 99), peerSocket{}, errNoPeer},
		{"no such socket", diagError(unix.ENOENT), peerSocket{}, errNoPeer},
		{"kernel error", diagError(unix.EPERM), peerSocket{}, unix.EPERM},
	}
	for _, tt := range tests {
		got, err := parseDiagReply(tt.reply, self, peer)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%s: parseDiagReply = %+v, %v; want %+v, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	good := diagReply(unix.AF_INET, established, self, peer, 1001, 777)
	for n := range len(good) - 8 { // the trailing attribute is not needed
		if _, err := parseDiagReply(good[:n], self, peer); err == nil {
			t.Errorf("parseDiagReply of the first %d bytes succeeded, want an error", n)
		}
	}
}

// FuzzParseDiagReply: no reply makes the parser panic, and none is accepted
// unless it names the socket asked for.
func FuzzParseDiagReply(f *testing.F) {
	self := netip.MustParseAddrPort("127.0.0.1:41000")
	peer := netip.MustParseAddrPort("127.0.0.1:8400")
	f.Add(diagReply(unix.AF_INET, 1, self, peer, 1001, 777))
	f.Add(diagReply(unix.AF_INET6, 1, self, peer, 1001, 777))
	f.Add(diagError(unix.ENOENT))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseDiagReply(b, self, peer)
		if err == nil && got.inode == 0 {
			t.Errorf("parseDiagReply accepted a socket with no inode: %+v", got)
		}
	})
}

func TestStatusID(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tcat\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nGroups:\t27 100\n")
	if id, ok := statusID(status, "Uid:"); id != 1001 || !ok {
		t.Errorf("statusID(Uid:) = %d, %v; want the effective 1001, true", id, ok)
	}
	if id, ok := statusID(status, "Gid:"); id != 2001 || !ok {
		t.Errorf("statusID(Gid:) = %d, %v; want the effective 2001, true", id, ok)
	}
	for _, bad := range []string{"", "Uid:\t1000\n", "Uid:\tx\ty\n"} {
		if id, ok := statusID([]byte(bad), "Uid:"); ok {
			t.Errorf("statusID(%q) = %d, true; want false", bad, id)
		}
	}
}

// TestFindProcessNoSuchInode scans every process and finds none.
func TestFindProcessNoSuchInode(t *testing.T) {
	if p, ok := findProcess(^uint32(0), os.Geteuid()); ok {
		t.Errorf("findProcess(no such inode) = %+v, true; want false", p)
	}
}
