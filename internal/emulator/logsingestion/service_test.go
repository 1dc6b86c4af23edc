package logsingestion

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

const (
	testDCR   = "dcr-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testApp   = "11111111-1111-4111-8111-111111111111"
	goodToken = "good"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

type sunk struct {
	mu   sync.Mutex
	rows []map[string]any
}

func (s *sunk) sink(ws, table string, rows []map[string]any) error {
	if ws != "ws" || table != "T_CL" {
		return errors.New("wrong target")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, rows...)
	return nil
}

func newTest(t *testing.T, rate int) (*Service, *clock, *sunk) {
	t.Helper()
	c := &clock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	k := &sunk{}
	s := New(Options{Now: c.Now, Sink: k.sink, RequestsPerMinute: rate, Verify: func(raw string) (loganalytics.Principal, error) {
		switch raw {
		case goodToken:
			return loganalytics.Principal{AppID: testApp, Audience: DefaultAudience + "/"}, nil
		case "la":
			return loganalytics.Principal{AppID: testApp, Audience: "https://api.loganalytics.io"}, nil
		}
		return loganalytics.Principal{}, errors.New("bad token")
	}})
	if err := s.AddDCR(testDCR, map[string]Stream{"Custom-T_CL": {WorkspaceID: "ws", Table: "T_CL"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Grant(testDCR, testApp, c.Now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	return s, c, k
}

func post(s *Service, path, token string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

const upload = "/dataCollectionRules/" + testDCR + "/streams/Custom-T_CL?api-version=2023-01-01"

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e.Error.Code
}

func TestServiceAnswers(t *testing.T) {
	t.Parallel()
	s, c, k := newTest(t, 0)
	rows := []byte(`[{"Msg":"a"},{"Msg":"b"}]`)

	// The role is not effective yet: 403, as while an assignment propagates.
	if w := post(s, upload, goodToken, rows, nil); w.Code != http.StatusForbidden || errorCode(t, w) != "OperationFailed" {
		t.Errorf("before the role: %d %s, want 403 OperationFailed", w.Code, w.Body)
	}
	c.Add(10 * time.Minute)
	if w := post(s, upload, goodToken, rows, nil); w.Code != http.StatusNoContent {
		t.Errorf("after the role: %d %s, want 204", w.Code, w.Body)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(`[{"Msg":"c"}]`))
	zw.Close()
	if w := post(s, upload, goodToken, zb.Bytes(), map[string]string{"Content-Encoding": "gzip"}); w.Code != http.StatusNoContent {
		t.Errorf("gzip: %d %s, want 204", w.Code, w.Body)
	}
	if len(k.rows) != 3 || s.Rows() != 3 {
		t.Errorf("stored %d rows (Rows() = %d), want 3", len(k.rows), s.Rows())
	}

	tests := []struct {
		name, path, token string
		body              []byte
		status            int
		code              string
	}{
		{"no token", upload, "", rows, http.StatusUnauthorized, "InvalidToken"},
		{"wrong audience", upload, "la", rows, http.StatusUnauthorized, "InvalidToken"},
		{"DCR by name", "/dataCollectionRules/my-dcr/streams/Custom-T_CL?api-version=2023-01-01", goodToken, rows, http.StatusNotFound, "NotFound"},
		{"unknown stream", "/dataCollectionRules/" + testDCR + "/streams/Custom-X_CL?api-version=2023-01-01", goodToken, rows, http.StatusNotFound, "InvalidStream"},
		{"no api-version", "/dataCollectionRules/" + testDCR + "/streams/Custom-T_CL", goodToken, rows, http.StatusBadRequest, "MissingApiVersionParameter"},
		{"not an array", upload, goodToken, []byte(`{"Msg":"a"}`), http.StatusBadRequest, "InvalidRequestContent"},
		{"over 1 MB as sent", upload, goodToken, []byte(`[{"Msg":"` + strings.Repeat("x", MaxCallBytes) + `"}]`), http.StatusRequestEntityTooLarge, "ContentLengthLimitExceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := post(s, tc.path, tc.token, tc.body, nil)
			if w.Code != tc.status || errorCode(t, w) != tc.code {
				t.Errorf("%d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
		})
	}
}

func TestServiceLimitIsCountedAsSent(t *testing.T) {
	t.Parallel()
	s, c, _ := newTest(t, 0)
	c.Add(10 * time.Minute)
	// 2 MB of records that gzip to far less than 1 MB are accepted.
	plain := []byte(`[{"Msg":"` + strings.Repeat("abc", 700_000) + `"}]`)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(plain)
	zw.Close()
	if w := post(s, upload, goodToken, zb.Bytes(), map[string]string{"Content-Encoding": "gzip"}); w.Code != http.StatusNoContent {
		t.Errorf("gzip'd 2 MB: %d %s, want 204", w.Code, w.Body)
	}
	calls := s.Calls()
	if c := calls[len(calls)-1]; !c.Gzip || c.Bytes != zb.Len() || c.Records != 1 {
		t.Errorf("call = %+v, want gzip, %d bytes, 1 record", c, zb.Len())
	}
}

func TestServiceRateAndFaults(t *testing.T) {
	t.Parallel()
	s, c, _ := newTest(t, 2)
	c.Add(10 * time.Minute)
	rows := []byte(`[{"Msg":"a"}]`)
	for range 2 {
		if w := post(s, upload, goodToken, rows, nil); w.Code != http.StatusNoContent {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	w := post(s, upload, goodToken, rows, nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Errorf("over the rate: %d Retry-After %q, want 429 with Retry-After 60", w.Code, w.Header().Get("Retry-After"))
	}
	c.Add(time.Minute)
	s.InjectFault(Fault{Status: http.StatusServiceUnavailable, RetryAfter: 3 * time.Second})
	w = post(s, upload, goodToken, rows, nil)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "3" {
		t.Errorf("fault: %d Retry-After %q, want 503 with Retry-After 3", w.Code, w.Header().Get("Retry-After"))
	}
	if w := post(s, upload, goodToken, rows, nil); w.Code != http.StatusNoContent {
		t.Errorf("after the fault: %d", w.Code)
	}
}
