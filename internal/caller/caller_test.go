package caller

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zapcore"
)

var (
	reports = Caller{Known: true, Network: "unix", UID: 1001, GID: 1002, PID: 4242,
		User: "svc-reports", Group: "reports", Exe: "/usr/bin/python3.12"}
	noProcess = Caller{Known: true, Network: "tcp", UID: 1001, GID: -1, PID: -1, User: "svc-reports"}
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    Caller
		want string
	}{
		{reports, "uid=1001(svc-reports) gid=1002(reports) pid=4242 exe=/usr/bin/python3.12 via unix"},
		{noProcess, "uid=1001(svc-reports) gid=? pid=? via tcp"},
		{Caller{Known: true, Network: "tcp", UID: 4000, GID: 4000, PID: 7}, "uid=4000 gid=4000 pid=7 via tcp"},
		{unknown("tcp"), "unknown caller via tcp"},
		{unknown(""), "unknown caller"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    Caller
		want string
	}{
		{reports, `{"known":true,"network":"unix","uid":1001,"gid":1002,"pid":4242,"user":"svc-reports","group":"reports","exe":"/usr/bin/python3.12"}`},
		{noProcess, `{"known":true,"network":"tcp","uid":1001,"gid":-1,"pid":-1,"user":"svc-reports"}`},
		{unknown("tcp"), `{"known":false,"network":"tcp","uid":-1,"gid":-1,"pid":-1}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.c)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("json.Marshal(%v) = %s, want %s", tt.c, b, tt.want)
		}
		var back Caller
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.c, back); diff != "" {
			t.Errorf("JSON round trip (-want +got):\n%s", diff)
		}
	}
}

func TestMarshalLogObject(t *testing.T) {
	t.Parallel()
	enc := zapcore.NewMapObjectEncoder()
	if err := reports.MarshalLogObject(enc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"known": true, "network": "unix", "uid": 1001, "gid": 1002, "pid": 4242,
		"user": "svc-reports", "group": "reports", "exe": "/usr/bin/python3.12"}
	if diff := cmp.Diff(want, enc.Fields); diff != "" {
		t.Errorf("MarshalLogObject fields (-want +got):\n%s", diff)
	}
	enc = zapcore.NewMapObjectEncoder()
	if err := unknown("").MarshalLogObject(enc); err != nil {
		t.Fatal(err)
	}
	want = map[string]any{"known": false, "uid": -1, "gid": -1, "pid": -1}
	if diff := cmp.Diff(want, enc.Fields); diff != "" {
		t.Errorf("MarshalLogObject fields of an unknown caller (-want +got):\n%s", diff)
	}
}

// TestLoopbackPeer is the decision that keeps a non-loopback peer unknown:
// the tests cannot safely reach such an address, so the decision is tested
// on addresses.
func TestLoopbackPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.8.9.10", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"10.0.0.7", false},
		{"192.168.1.20", false},
		{"::ffff:10.0.0.7", false},
		{"0.0.0.0", false},
		{"::", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"2001:db8::1", false},
		{"::127.0.0.1", false}, // IPv4-compatible, deprecated: not loopback
	}
	for _, tt := range tests {
		if got := loopbackPeer(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("loopbackPeer(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestFromContextWithoutCaller(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff(unknown(""), FromContext(context.Background())); diff != "" {
		t.Errorf("FromContext(Background) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(unknown(""), UserFromContext(context.Background())); diff != "" {
		t.Errorf("UserFromContext(Background) (-want +got):\n%s", diff)
	}
}

func TestNewContext(t *testing.T) {
	t.Parallel()
	ctx := NewContext(context.Background(), reports)
	if diff := cmp.Diff(reports, FromContext(ctx)); diff != "" {
		t.Errorf("FromContext(NewContext(reports)) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(reports, UserFromContext(ctx)); diff != "" {
		t.Errorf("UserFromContext(NewContext(reports)) (-want +got):\n%s", diff)
	}
}

// countingConn counts how often its local address is asked for, which
// Identify does exactly once per identification.
type countingConn struct {
	net.Conn
	asked atomic.Int32
}

func (c *countingConn) LocalAddr() net.Addr {
	c.asked.Add(1)
	return c.Conn.LocalAddr()
}

// wrapped is a connection wrapper in the style of *tls.Conn.
type wrapped struct {
	net.Conn
	inner net.Conn
}

func (w wrapped) NetConn() net.Conn { return w.inner }

func TestConnContextIsLazyAndOnce(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	conn := &countingConn{Conn: a}
	ctx := ConnContext(context.Background(), wrapped{inner: conn})
	if n := conn.asked.Load(); n != 0 {
		t.Fatalf("ConnContext looked at the connection %d times, want 0 until someone asks", n)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		from := FromContext
		if i%2 == 0 {
			from = UserFromContext
		}
		wg.Go(func() {
			// A pipe is neither unix nor tcp: unknown, named after its network.
			if got, want := from(ctx), unknown("pipe"); got != want {
				t.Errorf("FromContext = %v, want %v", got, want)
			}
		})
	}
	wg.Wait()
	if n := conn.asked.Load(); n != 1 {
		t.Errorf("8 FromContext and UserFromContext calls identified the connection %d times, want 1", n)
	}
}

func TestNameCache(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	lookups := 0
	names := map[int]string{0: "root", 1001: "svc-reports"}
	c := newNameCache(func() time.Time { return now },
		func(id int) string { lookups++; return names[id] },
		func(id int) string { return "g" + names[id] })
	for range 3 {
		if got := c.user(1001); got != "svc-reports" {
			t.Fatalf("user(1001) = %q, want svc-reports", got)
		}
		if got := c.user(1002); got != "" {
			t.Fatalf("user(1002) = %q, want no name", got)
		}
	}
	if lookups != 2 {
		t.Errorf("3 rounds of 2 ids cost %d lookups, want 2 (names and their absence are remembered)", lookups)
	}
	if got := c.user(-1); got != "" || lookups != 2 {
		t.Errorf("user(-1) = %q after %d lookups, want no name and no lookup", got, lookups)
	}
	if got := c.group(0); got != "groot" {
		t.Errorf("group(0) = %q, want groot (groups are looked up apart from users)", got)
	}
	names[1002] = "new-user"
	now = now.Add(nameTTL)
	if got := c.user(1002); got != "new-user" {
		t.Errorf("user(1002) after nameTTL = %q, want the new name", got)
	}
}
