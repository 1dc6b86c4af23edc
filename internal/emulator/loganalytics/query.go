package loganalytics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxBody caps a request body; the service's own limit is not documented, and
// real query bodies are small.
const maxBody = 4 << 20

// queryBody is the JSON body of a query (and of a batch item).
type queryBody struct {
	Query      *string  `json:"query"`
	Timespan   *string  `json:"timespan"`
	Workspaces []string `json:"workspaces"`
}

// answer is a finished query: status, extra headers, and the value to encode.
type answer struct {
	status int
	header http.Header
	body   any
}

func failureAnswer(f *failure) answer {
	return answer{status: f.status, header: f.header, body: f.body}
}

// queryResponse is the success body (reference §5.4).
type queryResponse struct {
	Tables     []table       `json:"tables"`
	Statistics any           `json:"statistics,omitempty"`
	Render     *renderObject `json:"render,omitempty"`
	Error      *apiError     `json:"error,omitempty"`
}

// renderObject is the render object in the recorded field order.
type renderObject struct {
	Visualization  *string `json:"visualization"`
	Title          *string `json:"title"`
	Accumulate     bool    `json:"accumulate"`
	IsQuerySorted  bool    `json:"isQuerySorted"`
	Kind           *string `json:"kind"`
	Legend         *string `json:"legend"`
	Series         *string `json:"series"`
	YMin           string  `json:"yMin"`
	YMax           string  `json:"yMax"`
	XAxis          *string `json:"xAxis"`
	XColumn        *string `json:"xColumn"`
	XTitle         *string `json:"xTitle"`
	YAxis          *string `json:"yAxis"`
	YColumns       *string `json:"yColumns"`
	YSplit         *string `json:"ySplit"`
	YTitle         *string `json:"yTitle"`
	AnomalyColumns *string `json:"anomalyColumns"`
}

// preferences are the parsed Prefer header values.
type preferences struct {
	wait       int  // seconds, clamped to maxWait
	waitSet    bool // wait was given
	statistics bool
	render     bool
}

// parsePrefer reads Prefer values ("include-statistics=true,wait=600").
// Unknown or malformed preferences are ignored, as preferences are.
func parsePrefer(values []string) preferences {
	p := preferences{wait: defaultWait}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
			switch k {
			case "wait":
				n, err := strconv.Atoi(val)
				if err != nil || n < 0 {
					continue
				}
				p.wait, p.waitSet = min(n, maxWait), true
			case "include-statistics":
				p.statistics = strings.EqualFold(val, "true")
			case "include-render":
				p.render = strings.EqualFold(val, "true")
			}
		}
	}
	return p
}

// serveWorkspace answers /v1/workspaces/{id}/query and …/metadata.
func (s *Service) serveWorkspace(x *exchange, m match) {
	x.rec.WorkspaceID = m.workspaceID
	s.countWorkspace(m.workspaceID)
	if s.workspaceFault(x, m.workspaceID) {
		return
	}
	p, fl := s.authenticate(x)
	if fl != nil {
		s.writeFailure(x.w, x.r, fl)
		return
	}
	ws := s.lookupWorkspace(m.workspaceID)
	if ws == nil {
		s.writeFailure(x.w, x.r, errResolveResource(x.cid))
		return
	}
	if !s.authorized(p, strings.ToLower(ws.id)) {
		s.writeFailure(x.w, x.r, errInsufficientAccess(x.cid, nil))
		return
	}
	if m.kind == routeMetadata {
		s.writeJSON(x.w, x.r, http.StatusOK, nil, s.metadata(ws))
		return
	}
	s.serveQuery(x, ws, p)
}

// serveResource answers the resource-centric /v1/subscriptions/…/query.
func (s *Service) serveResource(x *exchange, m match) {
	res, ws, found := s.lookupResource(m.resourceID)
	if found {
		x.rec.WorkspaceID = ws.id
		s.countWorkspace(ws.id)
		if s.workspaceFault(x, ws.id) {
			return
		}
	}
	p, fl := s.authenticate(x)
	if fl != nil {
		s.writeFailure(x.w, x.r, fl)
		return
	}
	if !found {
		s.writeFailure(x.w, x.r, errResourceNotFound(x.cid, m.resourceID))
		return
	}
	if !s.authorized(p, strings.ToLower(res.id), strings.ToLower(ws.id)) {
		who := p.ObjectID
		if who == "" {
			who = p.AppID
		}
		s.writeFailure(x.w, x.r, errInsufficientAccess(x.cid, &innerError{
			Code:    "AuthorizationFailedError",
			Message: fmt.Sprintf("User '%s' does not have access to read logs for this resource", who),
		}))
		return
	}
	s.serveQuery(x, ws, p)
}

// workspaceFault applies a fault queued for workspaceID unless a global one
// already applies; it reports whether the request is finished.
func (s *Service) workspaceFault(x *exchange, workspaceID string) bool {
	if x.fault != nil {
		return false
	}
	f := s.takeFault(workspaceID)
	if f == nil {
		return false
	}
	if s.applyFault(x, f) {
		return true
	}
	x.fault = f
	return false
}

// serveQuery reads the query from the request and answers it.
func (s *Service) serveQuery(x *exchange, ws *workspace, p Principal) {
	q, timespans, empty, fl := readQuery(x.r, x.cid)
	switch {
	case fl != nil:
		s.writeFailure(x.w, x.r, fl)
		return
	case empty:
		// A POST without Content-Type: application/json, or without a body,
		// is answered 200 with an empty body (reference §5.3, TV-13).
		setCommonHeaders(x.w.Header())
		x.w.Header().Set("Content-Length", "0")
		x.w.WriteHeader(http.StatusOK)
		return
	}
	done, fl := s.admit(x.r.Context(), x.cid, p)
	if fl != nil {
		s.writeFailure(x.w, x.r, fl)
		return
	}
	if done == nil {
		return // the client went away while queued
	}
	defer done()
	s.hold(x.r.Context())
	a := s.runQuery(x.cid, ws, q, timespans, parsePrefer(x.r.Header.Values("Prefer")), x.fault, p)
	s.writeJSON(x.w, x.r, a.status, a.header, a.body)
}

// readQuery extracts the query from a GET's parameters or a POST's body.
// empty reports the quirk case: a POST that is not JSON or has no body.
func readQuery(r *http.Request, cid string) (q queryBody, timespans []string, empty bool, fl *failure) {
	params := r.URL.Query()
	if ts, ok := params["timespan"]; ok {
		timespans = append(timespans, ts...)
	}
	if r.Method == http.MethodGet {
		if v, ok := params["query"]; ok {
			q.Query = &v[0]
		}
		return q, timespans, false, nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
		return q, nil, true, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return q, nil, false, errValidation(cid, "InvalidJsonBody", "The request body could not be read")
	}
	if len(body) > maxBody {
		return q, nil, false, errValidation(cid, "InvalidJsonBody", "The request body is too large")
	}
	if strings.TrimSpace(string(body)) == "" {
		return q, nil, true, nil
	}
	if err := json.Unmarshal(body, &q); err != nil {
		return q, nil, false, errValidation(cid, "InvalidJsonBody", jsonErrorMessage(err))
	}
	if q.Timespan != nil {
		timespans = append(timespans, *q.Timespan)
	}
	return q, timespans, false, nil
}

// jsonErrorMessage words a JSON decoding error the way the service does
// ("Unexpected end of JSON input"), without Go's own text.
func jsonErrorMessage(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if strings.Contains(syn.Error(), "unexpected end") {
			return "Unexpected end of JSON input"
		}
		return fmt.Sprintf("Unexpected token in JSON at position %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("Invalid type for property '%s'", typ.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "Unexpected end of JSON input"
	}
	return "Invalid JSON body"
}

// runQuery validates and evaluates a query against ws. It is shared by the
// direct routes and batch items.
func (s *Service) runQuery(cid string, ws *workspace, q queryBody, timespans []string, pref preferences, f *Fault, p Principal) answer {
	if q.Query == nil || strings.TrimSpace(*q.Query) == "" {
		return failureAnswer(errValidation(cid, "MissingRequiredParameter", "The 'query' parameter is required"))
	}
	for _, ts := range timespans {
		if !validTimespan(ts) {
			return failureAnswer(errValidation(cid, "InvalidTimespan",
				fmt.Sprintf("The timespan '%s' is not a valid ISO 8601 duration or interval", ts)))
		}
	}
	for _, other := range q.Workspaces {
		ows := s.lookupWorkspace(other)
		if ows == nil {
			return failureAnswer(errResolveResource(cid))
		}
		if !s.authorized(p, strings.ToLower(ows.id)) {
			return failureAnswer(errInsufficientAccess(cid, nil))
		}
	}
	dur := s.workspaceDuration(ws)
	partial := false
	if f != nil {
		if f.QueryDuration > 0 {
			dur = f.QueryDuration
		}
		partial = f.PartialError
	}
	if dur > time.Duration(pref.wait)*time.Second {
		return failureAnswer(errGatewayTimeout(cid, pref.wait))
	}
	res, err := evaluate(*q.Query, s.catalog(ws), s.now())
	if err != nil {
		var qe *queryError
		if errors.As(err, &qe) {
			return failureAnswer(errQuery(cid, qe))
		}
		return failureAnswer(errValidation(cid, "InvalidQuery", "The query could not be evaluated"))
	}
	body := queryResponse{Tables: []table{res.table}}
	if pref.statistics {
		body.Statistics = statistics(dur, res)
	}
	if pref.render {
		body.Render = &renderObject{YMin: "NaN", YMax: "NaN"}
		if res.render != "" {
			body.Render.Visualization = ptr(res.render)
		}
	}
	if partial {
		body.Error = partialErrorObject()
	}
	var h http.Header
	if pref.waitSet {
		h = http.Header{"Preference-Applied": {"wait=" + strconv.Itoa(pref.wait)}}
	}
	return answer{status: http.StatusOK, header: h, body: body}
}

// statistics builds the statistics object in the documented shape.
func statistics(dur time.Duration, res evalResult) any {
	type obj = map[string]any
	hits := obj{"hits": 0, "misses": 0, "total": 0}
	return obj{"query": obj{
		"executionTime": dur.Seconds(),
		"resourceUsage": obj{
			"cache": obj{
				"memory": hits, "disk": hits,
				"shards": obj{
					"hot":         obj{"hitbytes": 0, "missbytes": 0, "retrievebytes": 0},
					"cold":        obj{"hitbytes": 0, "missbytes": 0, "retrievebytes": 0},
					"bypassbytes": 0,
				},
			},
			"cpu":     obj{"user": formatTimespan(dur), "kernel": "00:00:00", "totalCpu": formatTimespan(dur)},
			"memory":  obj{"peakPerNode": 0},
			"network": obj{"interClusterTotalBytes": 0, "crossClusterTotalBytes": 0},
		},
		"inputDatasetStatistics": obj{
			"extents":   obj{"total": 1, "scanned": 1},
			"rows":      obj{"total": res.scanned, "scanned": res.scanned},
			"rowstores": obj{"scannedRows": 0, "scannedValuesSize": 0},
			"shards":    obj{"queriesGeneric": 1, "queriesSpecialized": 0},
		},
		"datasetStatistics":         []any{obj{"tableRowCount": len(res.table.Rows), "tableSize": 0}},
		"crossClusterResourceUsage": obj{},
	}}
}

// metadata is a minimal /metadata answer: the workspace and its tables.
func (s *Service) metadata(ws *workspace) any {
	type obj = map[string]any
	tables := s.catalog(ws)
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]any, 0, len(names))
	for _, n := range names {
		out = append(out, obj{
			"id": "t/" + n, "name": n, "timespanColumn": "TimeGenerated", "columns": tables[n].Columns,
		})
	}
	return obj{
		"tables":     out,
		"workspaces": []any{obj{"id": ws.id, "name": ws.id, "region": "westeurope"}},
	}
}

// isoDuration matches an ISO 8601 duration such as P1D, PT1H or P1DT2H30M.
var isoDuration = regexp.MustCompile(`^P(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$`)

func isISODuration(s string) bool {
	return len(s) > 1 && !strings.HasSuffix(s, "T") && isoDuration.MatchString(strings.ToUpper(s))
}

// validTimespan accepts the timespan forms of the API: an ISO 8601 duration,
// start/end, start/duration or duration/end (reference §5.2, §5.8).
func validTimespan(ts string) bool {
	ts, err := url.PathUnescape(strings.TrimSpace(ts))
	if err != nil || ts == "" {
		return false
	}
	parts := strings.Split(ts, "/")
	switch len(parts) {
	case 1:
		return isISODuration(parts[0])
	case 2:
		a, aok := parseInstant(parts[0])
		b, bok := parseInstant(parts[1])
		switch {
		case aok && bok:
			return !b.Before(a)
		case aok:
			return isISODuration(parts[1])
		case bok:
			return isISODuration(parts[0])
		}
	}
	return false
}

func parseInstant(s string) (time.Time, bool) {
	if strings.Contains(s, " ") {
		return time.Time{}, false
	}
	return parseDatetime(s)
}
