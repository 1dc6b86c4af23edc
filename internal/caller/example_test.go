package caller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/entrabroker/broker/internal/caller"
)

// A server that knows who asks: ConnContext remembers the caller with each
// connection, and a handler asks for it with FromContext (or, without the
// search for a TCP peer's process, UserFromContext).
func ExampleConnContext() {
	srv := &http.Server{
		Addr:        "127.0.0.1:8400",
		ConnContext: caller.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			who := caller.FromContext(r.Context())
			if !who.Known {
				http.Error(w, "who are you?", http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "hello, %s\n", who)
		}),
		ReadHeaderTimeout: 10 * time.Second, // a client gets this long to send its headers
	}
	_ = srv // srv.ListenAndServe()
}

// A caller as an audit line or an error body shows it.
func ExampleCaller() {
	who := caller.Caller{Known: true, Network: "unix", UID: 1001, GID: 1001, PID: 4242,
		User: "svc-reports", Group: "svc-reports", Exe: "/usr/bin/python3.12"}
	fmt.Println(who)
	json.NewEncoder(os.Stdout).Encode(who)

	fmt.Println(caller.FromContext(context.Background()))
	// Output:
	// uid=1001(svc-reports) gid=1001(svc-reports) pid=4242 exe=/usr/bin/python3.12 via unix
	// {"known":true,"network":"unix","uid":1001,"gid":1001,"pid":4242,"user":"svc-reports","group":"svc-reports","exe":"/usr/bin/python3.12"}
	// unknown caller
}
