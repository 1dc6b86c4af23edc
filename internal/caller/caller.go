// Package caller finds out who is on the other end of a connection to the
// broker: the user, group, process and executable of the local program that
// asks for a token.
//
// # What is trusted
//
// Only the kernel. Nothing the caller sends — no header, no query parameter,
// no client certificate — takes part in the answer:
//
//   - A unix socket peer is named by SO_PEERCRED: the uid, gid and pid the
//     kernel recorded when the peer called connect(2). Where the kernel offers
//     SO_PEERPIDFD (Linux 6.5 and later) the broker also holds a pidfd of that
//     process, so an executable read from /proc/<pid>/exe is the peer's own and
//     not that of a later process that reused the pid; if that process has
//     exited (its connection lives on in a child), PID and Exe are unknown.
//   - A TCP peer is identified only when it connects from a loopback address.
//     Its socket is then looked up in the kernel's socket table by the exact
//     four-tuple (the sock_diag netlink interface that ss(8) uses), which gives
//     the uid that created the socket and its inode; the process that holds
//     the inode is found by scanning /proc/<pid>/fd of the processes that run
//     as that uid. A peer socket that is no longer open in any process (a
//     time-wait or orphaned socket, whose uid the kernel reports as 0) is not
//     trusted: the caller is then unknown.
//   - Anything else — a non-loopback address, a failed lookup, another kind of
//     connection — is an unknown caller ([Caller.Known] is false). A policy
//     must treat an unknown caller as nobody in particular.
//
// # Limits
//
//   - The pid and the executable are facts about a process at the moment the
//     broker looks, not about who wrote the request. A process can write a
//     request and then exec(2) another program that inherits the socket, so
//     the broker would see the second program's executable. A rule that
//     matches an executable is only as strong as the uid that goes with it:
//     match executables together with a user or uid.
//   - Without SO_PEERPIDFD (kernels before 6.5) the pid of a unix socket peer
//     may have been reused by another process by the time the executable is
//     read; the uid and gid are not affected, they come from connect(2).
//   - A peer in another pid namespace (another container without a shared
//     process namespace) has no pid the broker can see: PID is -1 and Exe is
//     empty, while the uid is still known.
//   - Uids are those of the broker's user namespace. Root inside another user
//     namespace is whatever uid that namespace maps it to here, and a uid that
//     is not mapped here at all shows as the overflow uid (65534, usually
//     "nobody"). Granting anything to "nobody" grants it to every such caller.
//   - Finding the process of a TCP peer costs one readlink per open file of
//     each process that runs as the peer's uid, newest process first (the
//     process found last for that uid before all others); the search gives
//     up after maxFDScan files (tens of milliseconds), leaving PID, GID and
//     Exe unknown. A peer running as root on a busy host is the expensive
//     case. [UserFromContext] skips the search. The broker must run as root
//     (or with CAP_SYS_PTRACE) to look into other users' processes;
//     otherwise their Exe, and for TCP also their PID and GID, stay unknown
//     while the uid is known.
//   - Only Linux is supported: elsewhere every caller is unknown.
//
// Identification costs a few system calls per connection, never per request:
// [ConnContext] stores a lazy, once-only lookup with the connection, so
// connections that never ask for a token cost nothing. BenchmarkIdentifyTCP
// and its neighbours in bench_linux_test.go give the figures.
package caller

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap/zapcore"
)

// Caller is the identity of the program on the other end of a connection, as
// the kernel reports it. Numeric fields are -1 and strings empty when
// unknown. Its JSON form (uid, user, gid, group, pid, exe) is meant for audit
// lines and error bodies; it holds no secret.
type Caller struct {
	// Known reports whether the kernel named the peer's uid. When false, no
	// other field but Network may be relied upon.
	Known bool `json:"known"`
	// Network is how the caller connected: "unix" or "tcp" (also for IPv6),
	// or empty when there was no connection to look at.
	Network string `json:"network,omitempty"`
	// UID is the peer's effective uid: at connect(2) for a unix socket, the
	// socket's owner for TCP.
	UID int `json:"uid"`
	// GID is the peer's effective gid: at connect(2) for a unix socket, of
	// the process holding the socket for TCP (-1 if that was not found).
	GID int `json:"gid"`
	// PID is the process holding the connection, or -1.
	PID int `json:"pid"`
	// User and Group are the names of UID and GID, empty if they have none.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// Exe is the executable of PID (from /proc/<pid>/exe; it ends in
	// " (deleted)" when the file was removed after the program started), or
	// empty when it could not be read.
	Exe string `json:"exe,omitempty"`
}

// unknown is the caller nothing is known about.
func unknown(network string) Caller {
	return Caller{Network: network, UID: -1, GID: -1, PID: -1}
}

// String describes c for a log line in the style of id(1), for example
// "uid=1001(svc-reports) gid=1001(svc-reports) pid=4242 exe=/usr/bin/python3.12 via unix".
func (c Caller) String() string {
	via := ""
	if c.Network != "" {
		via = " via " + c.Network
	}
	if !c.Known {
		return "unknown caller" + via
	}
	var b strings.Builder
	b.WriteString("uid=")
	writeID(&b, c.UID, c.User)
	b.WriteString(" gid=")
	writeID(&b, c.GID, c.Group)
	b.WriteString(" pid=")
	writeID(&b, c.PID, "")
	if c.Exe != "" {
		b.WriteString(" exe=")
		b.WriteString(c.Exe)
	}
	b.WriteString(via)
	return b.String()
}

// writeID writes id as a number, or "?" when it is unknown, followed by
// "(name)" when there is a name.
func writeID(b *strings.Builder, id int, name string) {
	if id < 0 {
		b.WriteByte('?')
	} else {
		b.WriteString(strconv.Itoa(id))
	}
	if name != "" {
		fmt.Fprintf(b, "(%s)", name)
	}
}

// MarshalLogObject writes c as a structured zap field with the names of its
// JSON form, for zap.Object("caller", c).
func (c Caller) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddBool("known", c.Known)
	if c.Network != "" {
		enc.AddString("network", c.Network)
	}
	enc.AddInt("uid", c.UID)
	enc.AddInt("gid", c.GID)
	enc.AddInt("pid", c.PID)
	if c.User != "" {
		enc.AddString("user", c.User)
	}
	if c.Group != "" {
		enc.AddString("group", c.Group)
	}
	if c.Exe != "" {
		enc.AddString("exe", c.Exe)
	}
	return nil
}

// Identify asks the kernel who is on the other end of c, process included.
// It never fails: a peer it cannot name is an unknown caller. It may be
// called from any goroutine while c is open; it does not read from or write
// to c.
//
// A connection wrapped by a type with a NetConn() net.Conn method (such as
// *tls.Conn) is unwrapped first.
func Identify(c net.Conn) Caller {
	return identifyPeer(unwrap(c)).withProcess()
}

// unwrap returns the connection underneath wrappers such as *tls.Conn.
func unwrap(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// peer is what the cheap part of identifying a connection found: the caller
// as far as the kernel names it in a system call or two, and for TCP the
// inode of the peer's socket, whose process withProcess looks for.
type peer struct {
	Caller
	inode uint32 // 0: there is no process to look for
}

// ctxKey is the context key of the caller of a connection.
type ctxKey struct{}

// connCaller is the caller of one connection, each part looked up once and
// only when first asked for.
type connCaller struct {
	user func() Caller // the UserFromContext part
	full func() Caller // the FromContext part
}

// ConnContext returns ctx carrying the caller of c, looked up on the first
// FromContext or UserFromContext and then remembered for the life of the
// connection. Its signature fits http.Server.ConnContext.
//
// The lookup is lazy because net/http calls ConnContext in its accept loop,
// where system calls per connection would slow every accept; and because a
// connection that never asks for a token should cost nothing. Waiting is
// safe: the first request has arrived by the time anyone asks, so the peer's
// socket is still open, and as long as the broker's end of the connection is
// open no other socket can take over its address and port. A peer that has
// already closed its end by then is an unknown caller, which fails closed.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	c = unwrap(c)
	p := sync.OnceValue(func() peer { return identifyPeer(c) })
	return context.WithValue(ctx, ctxKey{}, &connCaller{
		user: func() Caller { return p().Caller },
		full: sync.OnceValue(func() Caller { return p().withProcess() }),
	})
}

// NewContext returns ctx carrying c as the caller, as if it had been
// identified: for tests, and for callers known without a connection.
func NewContext(ctx context.Context, c Caller) context.Context {
	f := func() Caller { return c }
	return context.WithValue(ctx, ctxKey{}, &connCaller{user: f, full: f})
}

// FromContext returns the caller that ConnContext or NewContext put in ctx,
// with everything that can be found about it, identifying it now if this is
// the first time for the connection (later calls return the remembered
// answer). For a TCP peer that means a search of /proc for its process —
// from microseconds to tens of milliseconds, depending on how many files its
// uid holds open — which UserFromContext avoids. A context with no caller
// gives an unknown caller with an empty Network. Safe for concurrent use.
func FromContext(ctx context.Context) Caller {
	cc, ok := ctx.Value(ctxKey{}).(*connCaller)
	if !ok {
		return unknown("")
	}
	return cc.full()
}

// UserFromContext is FromContext without the search for a TCP peer's
// process: Known, Network, UID and User are the same, but for TCP GID,
// Group, PID and Exe are always unknown (-1, ""). It costs a few system calls
// once per connection. A unix socket peer is named in full either way.
func UserFromContext(ctx context.Context) Caller {
	cc, ok := ctx.Value(ctxKey{}).(*connCaller)
	if !ok {
		return unknown("")
	}
	return cc.user()
}

// loopbackPeer reports whether a TCP peer at addr is on this host's loopback
// interface (127.0.0.0/8, ::1, or either mapped into IPv6), the only peers
// whose sockets are in the broker's own socket table. A connection from any
// other address, even one of this host's own, is not looked up.
func loopbackPeer(addr netip.Addr) bool {
	return addr.Unmap().IsLoopback()
}
