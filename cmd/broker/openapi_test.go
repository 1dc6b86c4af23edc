package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// spec is openapi.yaml, loaded and validated.
type spec struct{ doc *openapi3.T }

func loadSpec(t *testing.T) spec {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return spec{doc}
}

// check validates a live answer against the operation openapi.yaml gives
// for method and target (a path with an optional query).
func (s spec) check(t *testing.T, method, target string, header map[string]string, code int, h http.Header, body []byte) {
	t.Helper()
	path, _, _ := strings.Cut(target, "?")
	path = strings.TrimSuffix(path, "/")
	item := s.doc.Paths.Find(path)
	if item == nil {
		if code == http.StatusNotFound {
			return // an unknown path is not in the spec, by definition
		}
		t.Fatalf("openapi.yaml has no path %s", path)
	}
	op := item.GetOperation(method)
	if op == nil {
		if code == http.StatusMethodNotAllowed {
			return
		}
		t.Fatalf("openapi.yaml has no %s %s", method, path)
	}
	req := httptest.NewRequest(method, "http://127.0.0.1:8400"+target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req,
			Route:   &routers.Route{Spec: s.doc, Path: path, PathItem: item, Method: method, Operation: op},
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		},
		Status: code,
		Header: h,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			ExcludeResponseBody:   false,
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s → %d does not match openapi.yaml: %v\nbody: %s", method, target, code, err, body)
	}
}
