package caller

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// identifyPeer dispatches on the kind of connection, which is unwrapped.
func identifyPeer(c net.Conn) peer {
	switch local := c.LocalAddr().(type) {
	case *net.UnixAddr:
		return peer{Caller: identifyUnix(c)}
	case *net.TCPAddr:
		remote, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return peer{Caller: unknown("tcp")}
		}
		return identifyTCP(local.AddrPort(), remote.AddrPort())
	case nil:
		return peer{Caller: unknown("")}
	default:
		return peer{Caller: unknown(local.Network())}
	}
}

// withProcess adds the process holding a TCP peer's socket, if it can be
// found, to what identifyPeer found.
func (p peer) withProcess() Caller {
	who := p.Caller
	if p.inode == 0 {
		return who
	}
	if proc, ok := findProcess(p.inode, who.UID); ok {
		who.PID, who.GID, who.Exe = proc.pid, proc.gid, proc.exe
		who.Group = names.group(who.GID)
	}
	return who
}

// identifyUnix names the peer of a unix socket from SO_PEERCRED.
func identifyUnix(c net.Conn) Caller {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return unknown("unix")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return unknown("unix")
	}
	var (
		cred     *unix.Ucred
		credErr  error
		pidfd    = -1
		pidfdErr error
	)
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil && cred.Pid > 0 {
			pidfd, pidfdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, soPeerPidfd())
		}
	})
	if err != nil || credErr != nil {
		return unknown("unix")
	}
	if pidfd >= 0 {
		// Closing a pidfd only drops the reference; it cannot fail usefully.
		defer func() { _ = unix.Close(pidfd) }()
	}
	who := Caller{Known: true, Network: "unix", UID: int(cred.Uid), GID: int(cred.Gid), PID: -1}
	// A pid of 0 is a peer in a pid namespace the broker cannot see.
	if cred.Pid > 0 {
		pid := int(cred.Pid)
		switch {
		case pidfdErr == nil:
			// The pidfd pins the process that connected: if it is still
			// alive after the executable was read, the pid was not reused in
			// between. EPERM (a broker that may not signal it) means alive.
			exe := readExe(pid)
			if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); !errors.Is(err, unix.ESRCH) {
				who.PID, who.Exe = pid, exe
			}
		case errors.Is(pidfdErr, unix.ENOPROTOOPT):
			// A kernel before 6.5: no way to pin the process; see the
			// package documentation.
			who.PID, who.Exe = pid, readExe(pid)
		default:
			// The process that connected has exited; the connection lives
			// on in another (a child, or one it was passed to) that the
			// kernel does not name. The uid and gid still stand.
		}
	}
	who.User, who.Group = names.user(who.UID), names.group(who.GID)
	return who
}

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5), which golang.org/x/sys/unix does
// not define yet: 77 on every architecture Go supports but sparc64.
func soPeerPidfd() int {
	if runtime.GOARCH == "sparc64" {
		return 0x56
	}
	return 77
}

// identifyTCP names the uid of the peer of a TCP connection from local to
// remote (as the broker sees them), when remote is a loopback address, and
// the inode of its socket.
func identifyTCP(local, remote netip.AddrPort) peer {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if !loopbackPeer(remote.Addr()) {
		return peer{Caller: unknown("tcp")}
	}
	// The peer's socket is the one whose own address is remote and whose
	// peer is local.
	sock, err := lookupTCP(remote, local)
	if err != nil {
		return peer{Caller: unknown("tcp")}
	}
	who := Caller{Known: true, Network: "tcp", UID: sock.uid, GID: -1, PID: -1, User: names.user(sock.uid)}
	return peer{Caller: who, inode: sock.inode}
}
