package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

const ingestScope = "https://monitor.azure.com/.default"

// uploadPath is the demo DCR's stream through the proxy.
const uploadPath = "/proxy/ingestion/dataCollectionRules/" + logsingestion.DemoDCR + "/streams/" + logsingestion.DemoStream + "?api-version=2023-01-01"

// newIngestEmulated is the emulated cloud behind a proxy with the
// loganalytics and ingestion routes; retries wait on an instant clock.
func newIngestEmulated(t *testing.T, ing IngestionOptions) (*emulated, *instantClock) {
	t.Helper()
	clock := &settableClock{t: time.Now().Truncate(time.Second)}
	az := emulator.NewAzure(emulator.Options{Now: clock.Now})
	if err := az.AddDemo(); err != nil {
		t.Fatal(err)
	}
	cloudSrv := httptest.NewServer(az)
	t.Cleanup(cloudSrv.Close)
	tokens := &entraTokens{tokenURL: cloudSrv.URL + "/" + emulator.DemoTenantID + "/oauth2/v2.0/token", cur: map[string]string{}}
	up, _ := url.Parse(cloudSrv.URL)
	ic := &instantClock{now: clock.Now()}
	p := newTestProxy(t, nil, Options{
		Tokens: tokens,
		Routes: []Route{
			{Name: "loganalytics", Upstream: up, Scope: laScope},
			{Name: "ingestion", Upstream: up, Scope: ingestScope, Kind: KindIngestion},
		},
		Ingestion: ing,
		Clock:     ic,
	})
	return &emulated{azure: az, clock: clock, tokens: tokens, proxy: p}, ic
}

// records writes n records of about size bytes each as a JSON array, made
// as they are read; each message is a different slice of random text.
func records(n, size int, seed uint64) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		rng := rand.New(rand.NewPCG(seed, seed))
		const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
		text := make([]byte, 1<<16+size)
		for j := range text {
			text[j] = alphabet[rng.IntN(len(alphabet))]
		}
		bw.WriteString("[")
		for i := range n {
			if i > 0 {
				bw.WriteString(",\n")
			}
			off := rng.IntN(1 << 16)
			bw.WriteString(`{"TimeGenerated":"2024-05-01T12:00:00Z","Id":`)
			bw.WriteString(strconv.Itoa(i))
			bw.WriteString(`,"Msg":"`)
			bw.Write(text[off : off+size])
			bw.WriteString(`"}`)
		}
		bw.WriteString("]")
		pw.CloseWithError(bw.Flush())
	}()
	return pr
}

// upload posts body to the demo stream through the proxy.
func (e *emulated) upload(t *testing.T, body io.Reader, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+uploadPath, body)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	return e.proxy.do(t, req)
}

// storedIDs queries the demo table through the proxy and counts each Id.
func (e *emulated) storedIDs(t *testing.T) map[int64]int {
	t.Helper()
	res, body := e.query(t, loganalytics.DemoWorkspaceID, logsingestion.DemoTable+" | project Id", nil)
	if res.StatusCode == http.StatusBadRequest && strings.Contains(body, "SEM0100") {
		return map[int64]int{} // nothing stored yet: no table
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("query stored rows: %d %s", res.StatusCode, body)
	}
	var out struct {
		Tables []struct {
			Rows [][]int64 `json:"rows"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	ids := map[int64]int{}
	for _, r := range out.Tables[0].Rows {
		ids[r[0]]++
	}
	return ids
}

// answerBody is the proxy's answer to an upload not wholly accepted.
type answerBody struct {
	Error       string    `json:"error"`
	Hint        string    `json:"hint"`
	Received    int       `json:"records_received"`
	Accepted    int       `json:"records_accepted"`
	NotAccepted []outcome `json:"not_accepted"`
}

func TestIngestLargeArrayLandsInCallsUnder1MB(t *testing.T) {
	t.Parallel()
	e, _ := newIngestEmulated(t, IngestionOptions{})
	const n = 80_000 // about 20 MB
	res, body := e.upload(t, records(n, 200, 1), nil)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("upload = %d %s, want 204", res.StatusCode, body)
	}
	calls := e.azure.Ingestion.Calls()
	gz := 0
	for _, c := range calls {
		if c.Bytes >= 1_000_000 || c.Status != http.StatusNoContent {
			t.Errorf("call of %d bytes answered %d; want every call under 1 MB and 204", c.Bytes, c.Status)
		}
		if c.Gzip {
			gz++
		}
	}
	if len(calls) < 2 || gz == 0 {
		t.Errorf("%d calls, %d gzip'd; want the array split, compressed where it helps", len(calls), gz)
	}
	ids := e.storedIDs(t)
	if len(ids) != n {
		t.Fatalf("%d distinct records stored, want %d", len(ids), n)
	}
	for id, k := range ids {
		if k != 1 || id < 0 || id >= n {
			t.Fatalf("record %d stored %d times", id, k)
		}
	}
	if got := metricValue(t, e.proxy, "broker_proxy_ingestion_records_total", "route", "ingestion", "result", "accepted"); got != n {
		t.Errorf("records accepted metric = %v, want %d", got, n)
	}
}

func TestIngestRetriesAndDrops(t *testing.T) {
	t.Parallel()
	e, clock := newIngestEmulated(t, IngestionOptions{Concurrency: 2, MaxCallBytes: 100_000})
	in := e.azure.Ingestion
	in.InjectFault(logsingestion.Fault{Status: http.StatusTooManyRequests, RetryAfter: 7 * time.Second, Count: 2})
	in.InjectFault(logsingestion.Fault{Status: http.StatusServiceUnavailable})
	in.InjectFault(logsingestion.Fault{Drop: true})
	in.InjectFault(logsingestion.Fault{DropAfterStore: true})
	const n = 2_000
	res, body := e.upload(t, records(n, 200, 2), nil)

	var ans answerBody
	if res.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("answer %d is not JSON: %s", res.StatusCode, body)
		}
	}
	ids := e.storedIDs(t)
	named := map[int]outcome{}
	for _, o := range ans.NotAccepted {
		for i := o.First; i <= o.Last; i++ {
			named[i] = o
		}
	}
	for i := range n {
		k := ids[int64(i)]
		o, isNamed := named[i]
		switch {
		case k > 1:
			t.Fatalf("record %d stored %d times", i, k)
		case k == 0 && !isNamed:
			t.Fatalf("record %d neither stored nor named in the answer %s", i, body)
		case k == 1 && isNamed && !o.MayHaveLanded:
			t.Fatalf("record %d stored but named as not accepted (%+v)", i, o)
		}
	}
	if len(ans.NotAccepted) == 0 {
		t.Errorf("not_accepted is empty, want the two calls whose connections dropped")
	}
	for _, o := range ans.NotAccepted {
		if !o.MayHaveLanded || o.Code != "upstream_connection_lost" {
			t.Errorf("not_accepted %+v, want only calls whose connections dropped, marked may_have_landed", o)
		}
	}
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", res.StatusCode)
	}
	waited7 := 0
	for _, d := range clock.waits() {
		if d == 7*time.Second {
			waited7++
		}
	}
	if waited7 != 2 {
		t.Errorf("waits = %v, want the 429's Retry-After of 7 s twice", clock.waits())
	}
}

func TestIngestRecordTooLargeIsNotSent(t *testing.T) {
	t.Parallel()
	e, _ := newIngestEmulated(t, IngestionOptions{})
	big := strings.Repeat("x", 1_100_000)
	body := `[{"Id":0},{"Id":1,"Msg":"` + big + `"},{"Id":2}]`
	res, out := e.upload(t, strings.NewReader(body), nil)
	var ans answerBody
	if err := json.Unmarshal([]byte(out), &ans); err != nil || res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload = %d %s, want 413 JSON", res.StatusCode, out)
	}
	if len(ans.NotAccepted) != 1 || ans.NotAccepted[0].First != 1 || ans.NotAccepted[0].Last != 1 ||
		ans.NotAccepted[0].Code != "record_too_large" || ans.NotAccepted[0].Sent {
		t.Errorf("not_accepted = %+v, want record 1 refused as too large, unsent", ans.NotAccepted)
	}
	if ans.Received != 3 || ans.Accepted != 2 {
		t.Errorf("received %d accepted %d, want 3 and 2", ans.Received, ans.Accepted)
	}
	for _, c := range e.azure.Ingestion.Calls() {
		if c.Status == http.StatusRequestEntityTooLarge {
			t.Errorf("a call reached the service's 413")
		}
	}
}

func TestIngestRoleAndUnknownDCR(t *testing.T) {
	t.Parallel()
	e, _ := newIngestEmulated(t, IngestionOptions{})
	in := e.azure.Ingestion
	const dcr = "dcr-11111111111111111111111111111111"
	if err := in.AddDCR(dcr, map[string]logsingestion.Stream{"Custom-Late_CL": {WorkspaceID: loganalytics.DemoWorkspaceID, Table: "Late_CL"}}); err != nil {
		t.Fatal(err)
	}
	if err := in.Grant(dcr, emulator.DemoClientID, e.clock.Now().Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	post := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+path, strings.NewReader(`[{"Id":1}]`))
		req.Header.Set("Content-Type", "application/json")
		return e.proxy.do(t, req)
	}
	res, body := post("/proxy/ingestion/dataCollectionRules/" + dcr + "/streams/Custom-Late_CL?api-version=2023-01-01")
	if res.StatusCode != http.StatusForbidden || !strings.Contains(res.Header.Get(HintHeader), "Monitoring Metrics Publisher") ||
		!strings.Contains(body, "OperationFailed") {
		t.Errorf("before the role propagates: %d hint %q %s, want 403 OperationFailed with the role hint", res.StatusCode, res.Header.Get(HintHeader), body)
	}
	e.clock.Advance(21 * time.Minute)
	if res, body := post("/proxy/ingestion/dataCollectionRules/" + dcr + "/streams/Custom-Late_CL?api-version=2023-01-01"); res.StatusCode != http.StatusNoContent {
		t.Errorf("after the role propagated: %d %s, want 204", res.StatusCode, body)
	}
	res, body = post("/proxy/ingestion/dataCollectionRules/my-dcr/streams/Custom-Late_CL?api-version=2023-01-01")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(res.Header.Get(HintHeader), "immutable ID") {
		t.Errorf("unknown DCR: %d hint %q %s, want 404 with the immutable-ID hint", res.StatusCode, res.Header.Get(HintHeader), body)
	}
}

func TestIngestBodies(t *testing.T) {
	t.Parallel()
	e, _ := newIngestEmulated(t, IngestionOptions{})
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	io.Copy(zw, records(1000, 100, 3))
	zw.Close()
	tests := []struct {
		name   string
		body   string
		hdr    http.Header
		status int
		code   string
	}{
		{"empty array checks the route", `[]`, nil, http.StatusNoContent, ""},
		{"gzip'd upload", zbuf.String(), http.Header{"Content-Encoding": {"gzip"}}, http.StatusNoContent, ""},
		{"not an array", `{"Id":1}`, nil, http.StatusBadRequest, "invalid_json"},
		{"broken record", `[{"Id":1},{"Id":}]`, nil, http.StatusBadRequest, "invalid_json"},
		{"trailing garbage", `[{"Id":1}] x`, nil, http.StatusBadRequest, "invalid_json"},
		{"unknown encoding", `[]`, http.Header{"Content-Encoding": {"br"}}, http.StatusUnsupportedMediaType, "unsupported_content_encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.upload(t, strings.NewReader(tc.body), tc.hdr)
			if res.StatusCode != tc.status || tc.code != "" && !strings.Contains(body, `"error":"`+tc.code+`"`) {
				t.Errorf("upload = %d %s, want %d %s", res.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+uploadPath, strings.NewReader(`[]`))
	req.Header.Set("Content-Type", "text/plain")
	if res, _ := e.proxy.do(t, req); res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain upload = %d, want 415 (a web page could send it)", res.StatusCode)
	}
}

// discardUpstream is a Logs Ingestion stand-in that reads and counts the
// records of every call, keeping nothing.
type discardUpstream struct {
	mu      sync.Mutex
	records int
	calls   int
	largest int
}

func (d *discardUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cr := &countingReader{r: r.Body}
	var in io.Reader = cr
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(cr)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		in = zr
	}
	// Count the records as they stream by, holding one buffer: this
	// upstream must not add to the memory the test measures.
	n, err := countRecords(in)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.records += n
	d.calls++
	d.largest = max(d.largest, cr.n)
	d.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// countRecords counts the "Id": keys in r, one 32 KiB buffer at a time.
func countRecords(r io.Reader) (int, error) {
	pat := []byte(`"Id":`)
	buf := make([]byte, 32<<10)
	carry := 0
	n := 0
	for {
		k, err := r.Read(buf[carry:])
		data := buf[:carry+k]
		n += bytes.Count(data, pat)
		// Keep the tail that may start a key split across reads.
		carry = min(len(pat)-1, len(data))
		copy(buf, data[len(data)-carry:])
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// sampledReader calls sample after every step bytes read.
type sampledReader struct {
	r      io.Reader
	n      int
	step   int
	sample func()
}

func (s *sampledReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	before := s.n / s.step
	s.n += n
	if s.n/s.step != before {
		s.sample()
	}
	return n, err
}

func TestIngestMemoryStaysBounded(t *testing.T) {
	// Not parallel: it measures the process's heap.
	d := &discardUpstream{}
	up := httptest.NewServer(d)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	p := newTestProxy(t, nil, Options{
		Tokens: newSeqTokens("tok"),
		Routes: []Route{{Name: "ingestion", Upstream: u, Scope: ingestScope, Kind: KindIngestion}},
	})
	const n = 80_000 // about 20 MB
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapAlloc
	var peak uint64
	body := &sampledReader{r: records(n, 200, 4), step: 1 << 20, sample: func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/proxy/ingestion/dataCollectionRules/dcr-1/streams/Custom-X_CL?api-version=2023-01-01", body)
	req.Header.Set("Content-Type", "application/json")
	res, out := p.do(t, req)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("upload = %d %s", res.StatusCode, out)
	}
	if d.records != n || d.largest >= 1_000_000 {
		t.Errorf("upstream got %d records in %d calls, largest %d bytes; want %d, each under 1 MB", d.records, d.calls, d.largest, n)
	}
	growth := int64(peak) - int64(baseline)
	t.Logf("live heap growth through a %d-byte upload: %d bytes (%d calls)", body.n, growth, d.calls)
	// Holding the upload would take 20 MB; the working set is a few 1 MB
	// calls, their compressors and the connections' buffers.
	if limit := int64(16 << 20); growth > limit {
		t.Errorf("live heap grew by %d bytes, want under %d", growth, limit)
	}
}

func TestIngestOneGatePassPerUpload(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	auths := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		a := r.Header.Get("Authorization")
		mu.Lock()
		auths[a]++
		mu.Unlock()
		if a == "Bearer tok1" {
			w.WriteHeader(http.StatusUnauthorized) // the first token is refused
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	tokens := newSeqTokens("tok")
	p := newTestProxy(t, nil, Options{
		Tokens:    tokens,
		Routes:    []Route{{Name: "ingestion", Upstream: u, Scope: ingestScope, Kind: KindIngestion}},
		Ingestion: IngestionOptions{MaxCallBytes: 50_000, Concurrency: 1},
	})
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/proxy/ingestion/dataCollectionRules/dcr-1/streams/Custom-X_CL?api-version=2023-01-01", records(2000, 100, 6))
	req.Header.Set("Content-Type", "application/json")
	res, body := p.do(t, req)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("upload = %d %s", res.StatusCode, body)
	}
	tokens.mu.Lock()
	bearers := len(tokens.scopes)
	tokens.mu.Unlock()
	if bearers != 2 || len(tokens.dropped()) != 1 {
		t.Errorf("Bearer called %d times, Invalidate %d; want 2 (the first, then after the 401) and 1", bearers, len(tokens.dropped()))
	}
	if auths["Bearer tok1"] != 1 || auths["Bearer tok2"] < 3 {
		t.Errorf("calls by token = %v, want one refused call with tok1, then the rest with tok2", auths)
	}
}

func TestIngestStalledUploadTimesOut(t *testing.T) {
	t.Parallel()
	d := &discardUpstream{}
	up := httptest.NewServer(d)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	const timeout = 200 * time.Millisecond
	p := newTestProxy(t, nil, Options{
		Tokens:          newSeqTokens("tok"),
		Routes:          []Route{{Name: "ingestion", Upstream: u, Scope: ingestScope, Kind: KindIngestion}},
		BodyReadTimeout: timeout,
		Ingestion:       IngestionOptions{MaxCallBytes: 10_000},
	})
	// 100 records arrive, then the client stalls with the body unfinished.
	var first bytes.Buffer
	first.WriteString("[")
	for i := range 100 {
		if i > 0 {
			first.WriteString(",")
		}
		first.WriteString(`{"Id":` + strconv.Itoa(i) + `,"Msg":"` + strings.Repeat("m", 200) + `"}`)
	}
	first.WriteString(",")
	begin := time.Now()
	c := rawPost(t, strings.TrimPrefix(p.URL, "http://"), "/proxy/ingestion/dataCollectionRules/dcr-1/streams/Custom-X_CL?api-version=2023-01-01", 10<<20, first.Bytes())
	res, body, closed := readAnswer(t, c)
	var ans answerBody
	if err := json.Unmarshal([]byte(body), &ans); err != nil || res.StatusCode != http.StatusRequestTimeout || ans.Error != "body_timeout" {
		t.Fatalf("stalled upload: %d %s, want 408 body_timeout", res.StatusCode, body)
	}
	if !closed {
		t.Error("the connection stayed open after the 408")
	}
	if time.Since(begin) < timeout {
		t.Errorf("answered before the read timeout")
	}
	// The records that arrived were sent and are reported as accepted.
	if ans.Received != 100 || ans.Accepted != 100 || d.records != 100 {
		t.Errorf("received %d, accepted %d, upstream got %d; want 100 each", ans.Received, ans.Accepted, d.records)
	}
	waitBudget(t, p, 0)
}
