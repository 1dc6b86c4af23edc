package caller

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The sock_diag netlink interface (linux/inet_diag.h), which
// golang.org/x/sys/unix does not describe: one inet_diag_req_v2 asks for the
// socket with an exact four-tuple, one inet_diag_msg answers.
const (
	sizeofInetDiagSockID = 48 // sport, dport, src[16], dst[16], if, cookie[2]
	sizeofInetDiagReqV2  = 8 + sizeofInetDiagSockID
	sizeofInetDiagMsg    = 4 + sizeofInetDiagSockID + 20 // + expires, rqueue, wqueue, uid, inode
	// inetDiagNoCookie in both cookie words asks the kernel not to match
	// the socket cookie.
	inetDiagNoCookie = ^uint32(0)
)

// The TCP states (include/net/tcp_states.h) of a peer socket whose uid the
// kernel reports truthfully: a connected socket still open in a process. A
// time-wait socket is reported with uid 0, a listener is not a peer, and a
// socket still connecting is not connected to the broker.
var peerStates = map[uint8]bool{
	1:  true, // ESTABLISHED
	4:  true, // FIN_WAIT1
	5:  true, // FIN_WAIT2
	8:  true, // CLOSE_WAIT
	9:  true, // LAST_ACK
	11: true, // CLOSING
}

// peerSocket is what the kernel's socket table says about a peer's socket.
type peerSocket struct {
	uid   int
	inode uint32
}

// errNoPeer is a reply that names no usable peer socket.
var errNoPeer = errors.New("caller: no open peer socket with that address")

// lookupTCP asks the kernel for the TCP socket whose own address is self and
// whose peer is peer (both unmapped). A socket connected from an IPv4 address
// to a dual-stack listener is found by its IPv4 addresses.
func lookupTCP(self, peer netip.AddrPort) (peerSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return peerSocket{}, fmt.Errorf("caller: sock_diag socket: %w", err)
	}
	// Closing a netlink socket that is done with cannot fail usefully.
	defer func() { _ = unix.Close(fd) }()
	if err := unix.Sendto(fd, diagRequest(self, peer), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return peerSocket{}, fmt.Errorf("caller: sock_diag request: %w", err)
	}
	// The kernel answers a single-socket request before sendto returns, so
	// the reply is already queued: MSG_DONTWAIT cannot miss it, and a reply
	// that is not there (EAGAIN) fails the lookup instead of blocking.
	var buf [1024]byte
	n, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT)
	if err != nil {
		return peerSocket{}, fmt.Errorf("caller: sock_diag reply: %w", err)
	}
	return parseDiagReply(buf[:n], self, peer)
}

// diagRequest is the netlink message asking for the TCP socket self→peer.
func diagRequest(self, peer netip.AddrPort) []byte {
	const sizeofMsg = unix.SizeofNlMsghdr + sizeofInetDiagReqV2
	b := make([]byte, sizeofMsg)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], sizeofMsg)
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 1) // sequence number; one request per socket
	r := b[unix.SizeofNlMsghdr:]
	r[0] = unix.AF_INET6
	if self.Addr().Is4() {
		r[0] = unix.AF_INET
	}
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state; the reply's is checked
	putSockID(r[8:], self, peer)
	return b
}

// putSockID writes an inet_diag_sockid for the socket self→peer.
func putSockID(id []byte, self, peer netip.AddrPort) {
	binary.BigEndian.PutUint16(id[0:], self.Port())
	binary.BigEndian.PutUint16(id[2:], peer.Port())
	putAddr(id[4:20], self.Addr())
	putAddr(id[20:36], peer.Addr())
	// id[36:40], the interface index, stays 0: any interface.
	binary.NativeEndian.PutUint32(id[40:], inetDiagNoCookie)
	binary.NativeEndian.PutUint32(id[44:], inetDiagNoCookie)
}

// putAddr writes a as the kernel expects it: an IPv4 address in the first
// four bytes, an IPv6 address in all sixteen.
func putAddr(dst []byte, a netip.Addr) {
	if a.Is4() {
		v4 := a.As4()
		copy(dst, v4[:])
		return
	}
	v6 := a.As16()
	copy(dst, v6[:])
}

// sockAddr reads one address of an inet_diag_sockid of the given family.
func sockAddr(family uint8, b []byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

// parseDiagReply reads the kernel's answer to diagRequest(self, peer). It
// accepts only a socket with exactly that four-tuple, in a connected state,
// still open in some process (inode not 0): the kernel's lookup falls back to
// a listener on self's port when no connected socket matches, and reports a
// time-wait socket with uid 0.
func parseDiagReply(b []byte, self, peer netip.AddrPort) (peerSocket, error) {
	ne := binary.NativeEndian
	if len(b) < unix.SizeofNlMsghdr {
		return peerSocket{}, fmt.Errorf("caller: sock_diag reply of %d bytes", len(b))
	}
	msgLen := int(ne.Uint32(b[0:]))
	if msgLen < unix.SizeofNlMsghdr || msgLen > len(b) {
		return peerSocket{}, fmt.Errorf("caller: sock_diag reply claims %d bytes of %d", msgLen, len(b))
	}
	body := b[unix.SizeofNlMsghdr:msgLen]
	switch typ := ne.Uint16(b[4:]); typ {
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return peerSocket{}, errors.New("caller: short sock_diag error")
		}
		if errno := -int32(ne.Uint32(body)); errno > 0 {
			if unix.Errno(errno) == unix.ENOENT {
				return peerSocket{}, errNoPeer
			}
			return peerSocket{}, fmt.Errorf("caller: sock_diag: %w", unix.Errno(errno))
		}
		return peerSocket{}, errNoPeer
	case unix.SOCK_DIAG_BY_FAMILY:
	default:
		return peerSocket{}, fmt.Errorf("caller: sock_diag reply of type %d", typ)
	}
	if len(body) < sizeofInetDiagMsg {
		return peerSocket{}, fmt.Errorf("caller: sock_diag message of %d bytes", len(body))
	}
	family, state := body[0], body[1]
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return peerSocket{}, fmt.Errorf("caller: sock_diag family %d", family)
	}
	id := body[4 : 4+sizeofInetDiagSockID]
	gotSelf := netip.AddrPortFrom(sockAddr(family, id[4:20]), binary.BigEndian.Uint16(id[0:]))
	gotPeer := netip.AddrPortFrom(sockAddr(family, id[20:36]), binary.BigEndian.Uint16(id[2:]))
	if gotSelf != self || gotPeer != peer {
		return peerSocket{}, errNoPeer
	}
	uid := ne.Uint32(body[4+sizeofInetDiagSockID+12:])
	inode := ne.Uint32(body[4+sizeofInetDiagSockID+16:])
	if !peerStates[state] || inode == 0 {
		return peerSocket{}, errNoPeer
	}
	return peerSocket{uid: int(uid), inode: inode}, nil
}
