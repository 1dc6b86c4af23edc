//go:build !linux

package caller

import "net"

// identifyPeer knows no peers outside Linux: every caller is unknown there.
func identifyPeer(c net.Conn) peer {
	if a := c.LocalAddr(); a != nil {
		return peer{Caller: unknown(a.Network())}
	}
	return peer{Caller: unknown("")}
}

// withProcess has nothing to add outside Linux.
func (p peer) withProcess() Caller { return p.Caller }
