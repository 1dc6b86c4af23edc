package httperr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantRetryAfter string
		wantBody       Body
	}{
		{
			name: "error with every field",
			err: &Error{Status: 502, Code: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.",
				Hint: "Copy the Value.", AADCodes: []int{7000215}, CorrelationID: "c-1", Err: errors.New("cause with a secret s3cr3t")},
			wantStatus: 502,
			wantBody: Body{Error: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.",
				Hint: "Copy the Value.", AADCodes: []int{7000215}, CorrelationID: "c-1"},
		},
		{
			name:           "retry after is rounded up to whole seconds",
			err:            &Error{Status: 503, Code: "entra_unavailable", Description: "d", RetryAfter: 1500 * time.Millisecond},
			wantStatus:     503,
			wantRetryAfter: "2",
			wantBody:       Body{Error: "entra_unavailable", Description: "d"},
		},
		{
			name:       "wrapped error keeps its status",
			err:        fmt.Errorf("handler: %w", New(http.StatusForbidden, "scope_not_allowed", "no", "ask")),
			wantStatus: 403,
			wantBody:   Body{Error: "scope_not_allowed", Description: "no", Hint: "ask"},
		},
		{
			name:       "any other error is a generic 500",
			err:        errors.New("open /etc/broker/secret: permission denied"),
			wantStatus: 500,
			wantBody:   Body{Error: Internal.Code, Description: Internal.Description, Hint: Internal.Hint},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			Write(w, tt.err)
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if strings.Contains(w.Body.String(), "s3cr3t") || strings.Contains(w.Body.String(), "permission denied") {
				t.Errorf("body %s carries the cause", w.Body)
			}
			var got Body
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", w.Body, err)
			}
			if diff := cmp.Diff(tt.wantBody, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAsKeepsTheCauseForTheLog(t *testing.T) {
	t.Parallel()
	cause := errors.New("disk on fire")
	e := As(cause)
	if e.Status != 500 || !errors.Is(e, cause) {
		t.Errorf("As(cause) = %v, want a 500 that unwraps to the cause", e)
	}
	if Internal.Err != nil {
		t.Error("As changed the shared Internal error")
	}
}
