package loganalytics

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// batchRequest is the $batch body (reference §5.6).
type batchRequest struct {
	Requests *[]batchItem `json:"requests"`
}

// batchItem is one request of a batch. Body is kept raw: a GET item ignores
// it.
type batchItem struct {
	ID        *string           `json:"id"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Workspace string            `json:"workspace"`
}

// batchResponse is the $batch answer.
type batchResponse struct {
	Responses []batchItemResponse `json:"responses"`
}

type batchItemResponse struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Body    any               `json:"body,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// serveBatch answers POST /v1/$batch. The batch as a whole fails (400) only
// when its JSON is invalid or an item lacks an id or workspace or repeats an
// id; every other problem is that item's status. Items are answered in
// request order (the service does not promise any order).
func (s *Service) serveBatch(x *exchange) {
	p, fl := s.authenticate(x)
	if fl != nil {
		s.writeFailure(x.w, x.r, fl)
		return
	}
	mt, _, err := mime.ParseMediaType(x.r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		setCommonHeaders(x.w.Header())
		x.w.Header().Set("Content-Length", "0")
		x.w.WriteHeader(http.StatusOK)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(x.r.Body, maxBody+1))
	if err != nil || len(raw) > maxBody {
		s.writeFailure(x.w, x.r, errValidation(x.cid, "InvalidJsonBody", "The request body could not be read"))
		return
	}
	var req batchRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		s.writeFailure(x.w, x.r, errValidation(x.cid, "InvalidJsonBody", jsonErrorMessage(err)))
		return
	}
	if fl := validateBatch(x.cid, req); fl != nil {
		s.writeFailure(x.w, x.r, fl)
		return
	}
	out := batchResponse{Responses: make([]batchItemResponse, 0, len(*req.Requests))}
	for _, it := range *req.Requests {
		resp, stop := s.batchItem(x, it, p)
		if stop {
			return
		}
		out.Responses = append(out.Responses, resp)
	}
	s.writeJSON(x.w, x.r, http.StatusOK, nil, out)
}

// validateBatch checks what makes a whole batch fail.
func validateBatch(cid string, req batchRequest) *failure {
	const code = "InvalidBatchRequest"
	if req.Requests == nil || len(*req.Requests) == 0 {
		return errValidation(cid, code, "The 'requests' property must hold at least one request")
	}
	seen := map[string]bool{}
	for i, it := range *req.Requests {
		switch {
		case it.ID == nil || *it.ID == "":
			return errValidation(cid, code, fmt.Sprintf("Request %d has no 'id'", i))
		case seen[*it.ID]:
			return errValidation(cid, code, fmt.Sprintf("Request id '%s' is used more than once", *it.ID))
		case it.Workspace == "":
			return errValidation(cid, code, fmt.Sprintf("Request '%s' has no 'workspace'", *it.ID))
		}
		seen[*it.ID] = true
	}
	return nil
}

// batchItem answers one item. stop reports that a fault finished the whole
// exchange (dropped, malformed or abandoned).
func (s *Service) batchItem(x *exchange, it batchItem, p Principal) (resp batchItemResponse, stop bool) {
	resp.ID = *it.ID
	put := func(a answer) (batchItemResponse, bool) {
		resp.Status, resp.Body = a.status, a.body
		if v := a.header.Get("Preference-Applied"); v != "" {
			resp.Headers = map[string]string{"Preference-Applied": v}
		}
		return resp, false
	}
	s.countWorkspace(it.Workspace)

	method := strings.ToUpper(it.Method)
	if method == "" {
		method = http.MethodGet // the documented default
	}
	path, rawQuery, _ := strings.Cut(it.Path, "?")
	if method != http.MethodGet && method != http.MethodPost || !strings.EqualFold(path, "/query") {
		return put(failureAnswer(errPathNotFound(x.cid)))
	}

	f := x.fault
	if f == nil {
		if f = s.takeFault(it.Workspace); f != nil {
			if err := f.hold(x.r.Context()); err != nil {
				return resp, true
			}
			switch {
			case f.Drop:
				dropConnection(x.w)
				return resp, true
			case f.Malformed:
				s.writeBody(x.w, x.r, http.StatusOK, []byte(malformedBody))
				return resp, true
			case f.Status != 0:
				fl := errStatus(x.cid, f.Status)
				if f.Status == http.StatusNoContent {
					return put(answer{status: f.Status})
				}
				return put(failureAnswer(fl))
			}
		}
	}

	ws := s.lookupWorkspace(it.Workspace)
	if ws == nil {
		return put(failureAnswer(errResolveResource(x.cid)))
	}
	if !s.authorized(p, strings.ToLower(ws.id)) {
		return put(failureAnswer(errInsufficientAccess(x.cid, nil)))
	}

	var q queryBody
	var timespans []string
	if method == http.MethodGet {
		params, err := url.ParseQuery(rawQuery)
		if err != nil {
			return put(failureAnswer(errValidation(x.cid, "InvalidQueryString", "The request path's query string is not valid")))
		}
		if v, ok := params["query"]; ok {
			q.Query = &v[0]
		}
		timespans = params["timespan"]
	} else if len(it.Body) > 0 && string(it.Body) != "null" {
		if err := json.Unmarshal(it.Body, &q); err != nil {
			return put(failureAnswer(errValidation(x.cid, "InvalidJsonBody", jsonErrorMessage(err))))
		}
		if q.Timespan != nil {
			timespans = append(timespans, *q.Timespan)
		}
	}
	var prefer []string
	for k, v := range it.Headers {
		if strings.EqualFold(k, "Prefer") {
			prefer = append(prefer, v)
		}
	}
	return put(s.runQuery(x.cid, ws, q, timespans, parsePrefer(prefer), f, p))
}
