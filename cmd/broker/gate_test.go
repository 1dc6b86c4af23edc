package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// TestAllowedScopesCoverTheProxy reproduces issue 12's second attack: with
// BROKER_ALLOWED_SCOPES set to Log Analytics, /proxy/arm/… fetched and used
// an ARM token. Now it is 403 scope_not_allowed, and Entra never sees a
// request for the ARM scope; the allowed route still works.
func TestAllowedScopesCoverTheProxy(t *testing.T) {
	t.Parallel()
	az, r := startReady(t, map[string]string{"BROKER_ALLOWED_SCOPES": "https://api.loganalytics.io/.default"})
	code, _, body := call(t, "GET", r.api+"/proxy/arm/subscriptions?api-version=2022-12-01", nil, "")
	var e struct{ Error, Hint string }
	_ = json.Unmarshal(body, &e)
	if code != http.StatusForbidden || e.Error != "scope_not_allowed" {
		t.Errorf("GET /proxy/arm/subscriptions = %d %s, want 403 scope_not_allowed", code, body)
	}
	for _, scope := range []string{"https://management.azure.com/.default", "https://management.core.windows.net//.default"} {
		if n := az.Entra.Requests(emulator.DemoClientID, scope); n != 0 {
			t.Errorf("Entra saw %d requests for %s, want 0", n, scope)
		}
	}
	code, _, body = call(t, "GET", r.api+"/proxy/loganalytics/v1/workspaces/"+loganalytics.DemoWorkspaceID+"/query?query=Heartbeat%20%7C%20take%201", nil, "")
	if code != http.StatusOK {
		t.Errorf("GET /proxy/loganalytics/…/query = %d %s, want 200", code, body)
	}
}
