package main

// Browser tests: a real headless Chromium loads a page from another site (and
// from another port on loopback, which is the same site) and tries every way
// a web page can reach the broker — fetch in cors and no-cors mode, fetch
// with the guard headers, a JSON POST, <img>, <script>, <iframe>, form POSTs,
// navigator.sendBeacon and top-level navigations — against every route. No
// request may reach an upstream, Entra may see no request beyond the broker's
// own prefetch, and the page may read nothing: no answer, and no cookie an
// upstream set.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
)

// requireToolsEnv names the environment variable that turns a missing external
// tool (chromium) from a skipped test into a failed one. CI sets it.
const requireToolsEnv = "BROKER_REQUIRE_TOOLS"

// requireTool returns the path of the named executable. When it is not on
// PATH the test is skipped, or fails when BROKER_REQUIRE_TOOLS=1. It is the
// helper of the deploy tests, which live in another package.
func requireTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("%s is not on PATH and %s=1: install it (Debian: apt-get install %s)", name, requireToolsEnv, debianPackage)
	}
	t.Skipf("%s is not on PATH (set %s=1 to make this a failure)", name, requireToolsEnv)
	return ""
}

// upstreamMarker is in every body the counting upstreams send: a page that
// holds it has read an upstream answer.
const upstreamMarker = "upstream-row-the-page-must-not-read"

// upstreamCookie is the cookie the counting upstreams set.
const upstreamCookie = "upstream-session"

// seenRequest is one request that reached a counting upstream.
type seenRequest struct {
	method, uri, contentType, origin, fetchSite string
	bearer                                      bool
}

// countingUpstream stands for an API behind a proxy route at its most
// permissive: it records every request and answers each, preflights
// included, with a Log Analytics result, Access-Control-Allow-Origin: *
// and a cookie.
type countingUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newCountingUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	u := &countingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{
			method: r.Method, uri: r.RequestURI, contentType: r.Header.Get("Content-Type"),
			origin: r.Header.Get("Origin"), fetchSite: r.Header.Get("Sec-Fetch-Site"),
			bearer: strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "),
		})
		u.mu.Unlock()
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
		h.Set("Access-Control-Allow-Headers", "*")
		h.Set("Access-Control-Expose-Headers", "*")
		h.Set("Set-Cookie", upstreamCookie+"=s3cr3t; Path=/")
		h.Set("Cache-Control", "no-store")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"tables":[{"name":"PrimaryResult","columns":[{"name":"Computer","type":"string"}],"rows":[["%s"]]}]}`, upstreamMarker)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *countingUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// attackResult is what the page reports for one attack on one route.
type attackResult struct {
	Route   string `json:"route"`
	Attack  string `json:"attack"`
	Outcome string `json:"outcome"` // "response", "error: …", "load", "error event", "timeout", "queued", …
	Type    string `json:"type"`    // a fetch response's type; "document" for a frame the page could open
	Status  int    `json:"status"`
	Body    string `json:"body"`
}

// read reports whether the page saw into the broker's answer: a fetch
// response that is not opaque, a frame whose document it could open, or any
// text at all.
func (a attackResult) read() bool {
	return a.Outcome == "response" && a.Type != "opaque" || a.Type == "document" || a.Status != 0 || a.Body != ""
}

// pageReport is the body of the page's POST /report, its last act, and
// the cookies that request carried.
type pageReport struct {
	Results []attackResult `json:"results"`
	// Cookies is document.cookie at the end. Cookies are not isolated by
	// port: one an upstream set through the broker on 127.0.0.1 is readable
	// by a page on any other port of 127.0.0.1.
	Cookies      string `json:"cookies"`
	Fatal        string `json:"fatal"`
	cookieHeader string
}

// browserRoute is one broker route the page attacks, and, for the routes
// that take a token, the scope that would reach Entra if the attack worked.
type browserRoute struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	scope string
}

func TestBrowsersCannotUseTheBroker(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	variants := []struct {
		name string
		// host is the page's host name: attacker.test is mapped to
		// 127.0.0.1 in Chromium, so the page is on another site; a page
		// on 127.0.0.1 (any local dev server) is on the broker's site.
		host string
	}{
		{"page on another site", "attacker.test"},
		{"page on another port of loopback", "127.0.0.1"},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			attackFromBrowser(t, chromium, v.host)
		})
	}
}

// attackFromBrowser starts the broker with two counting upstreams, lets one
// Chromium run the attack page served under host, and checks that nothing
// got through.
func attackFromBrowser(t *testing.T, chromium, host string) {
	az, emu := emulated(t)
	la, custom := newCountingUpstream(t), newCountingUpstream(t)
	routesFile := filepath.Join(t.TempDir(), "routes.yaml")
	routesYAML := "routes:\n  - name: custom\n    upstream: " + custom.srv.URL + "\n    scope: https://management.azure.com/.default\n"
	if err := os.WriteFile(routesFile, []byte(routesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := serveEnv(emu.URL)
	env["BROKER_LOGANALYTICS_ENDPOINT"] = la.srv.URL
	env["BROKER_ROUTES_FILE"] = routesFile
	r := start(t, env)
	waitFor(t, "/readyz to answer 200", func() bool {
		code, _, _ := call(t, "GET", r.ops+"/readyz", nil, "")
		return code == http.StatusOK
	})
	// The prefetch is done: from now on every token request Entra sees was
	// caused by the page.
	entraBefore := az.Entra.TotalRequests()

	// The scopes of the token routes are not prefetched, so that a token
	// the page obtained would show at Entra too.
	routes := []browserRoute{
		{"/token", "/token?resource=https://graph.microsoft.com", "https://graph.microsoft.com/.default"},
		{"/msi/token", "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", "https://vault.azure.net/.default"},
		{"IMDS", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com", "https://storage.azure.com/.default"},
		{"loganalytics proxy", "/proxy/loganalytics/v1/workspaces/" + loganalytics.DemoWorkspaceID + "/query?query=Heartbeat%20%7C%20take%201", ""},
		{"custom proxy route", "/proxy/custom/api/items?top=1", "https://management.azure.com/.default"},
		{"unknown proxy route", "/proxy/nowhere/v1/x", ""},
		{"unknown path", "/nothing", ""},
	}
	page, reports := attackerSite(t, pageConfig{Broker: r.api, Routes: routes, IdentityHeader: identityHeader})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(page.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	pageURL := "http://" + host + ":" + port + "/"

	report := runChromium(t, chromium, pageURL, reports)
	if report.Fatal != "" {
		t.Fatalf("the attack page failed: %s", report.Fatal)
	}
	attacked := map[[2]string]bool{}
	outcomes := map[string][]string{}
	for _, a := range report.Results {
		attacked[[2]string{a.Route, a.Attack}] = true
		outcomes[a.Route] = append(outcomes[a.Route], a.Attack+": "+a.Outcome)
		if a.read() || strings.Contains(a.Body, "access_token") || strings.Contains(a.Body, upstreamMarker) {
			t.Errorf("%s against %s: the page read the answer (outcome %q, type %q, status %d, body %.300q)", a.Attack, a.Route, a.Outcome, a.Type, a.Status, a.Body)
		}
	}
	if strings.Contains(report.Cookies, upstreamCookie) || strings.Contains(report.cookieHeader, upstreamCookie) {
		t.Errorf("an upstream's cookie reached the page's browser for the page's host: document.cookie %q, Cookie header %q", report.Cookies, report.cookieHeader)
	}
	for _, rt := range routes {
		t.Logf("%s: %s", rt.Name, strings.Join(outcomes[rt.Name], "; "))
		for _, name := range attackNames {
			if !attacked[[2]string{rt.Name, name}] {
				t.Errorf("the page did not report the attack %s against %s", name, rt.Name)
			}
		}
	}

	for _, up := range []struct {
		name string
		u    *countingUpstream
	}{{"Log Analytics", la}, {"custom route's", custom}} {
		seen := up.u.requests()
		for _, s := range seen {
			t.Errorf("%s reached the %s upstream: %s %s (Content-Type %q, Origin %q, Sec-Fetch-Site %q, with the broker's bearer token: %v)",
				attackOf(s.uri), up.name, s.method, s.uri, s.contentType, s.origin, s.fetchSite, s.bearer)
		}
		if len(seen) > 0 {
			t.Errorf("the %s upstream received %d requests from the page, want 0", up.name, len(seen))
		}
	}
	if n := az.LogAnalytics.Requests(); n != 0 {
		t.Errorf("the emulated Log Analytics received %d requests, want 0 (the route points at the counting upstream)", n)
	}
	if n := az.Entra.TotalRequests() - entraBefore; n != 0 {
		for _, rt := range routes {
			if rt.scope != "" {
				if got := az.Entra.Requests(emulator.DemoClientID, rt.scope); got > 0 {
					t.Errorf("the page made the broker ask Entra for a token for %s (%s) %d times", rt.Name, rt.scope, got)
				}
			}
		}
		t.Errorf("Entra received %d token requests after the prefetch, want 0", n)
	}
	noPanics(t, r)
}

// attackOf names the attack that sent a request, from the attack parameter
// the page adds to every URL.
func attackOf(requestURI string) string {
	u, err := url.ParseRequestURI(requestURI)
	if err != nil || u.Query().Get("attack") == "" {
		return "an untagged request"
	}
	return "attack " + u.Query().Get("attack")
}

// pageConfig is what the attack page is told: where the broker is, what to
// attack, and — to make the test strict — the identity header's secret, which
// a real attacker would not know.
type pageConfig struct {
	Broker         string         `json:"broker"`
	Routes         []browserRoute `json:"routes"`
	IdentityHeader string         `json:"identityHeader"`
}

// attackerSite serves the attack page and receives its report.
func attackerSite(t *testing.T, cfg pageConfig) (*httptest.Server, <-chan pageReport) {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	html := strings.Replace(attackPage, "CONFIG", string(js), 1)
	reports := make(chan pageReport, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, html)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep pageReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			rep.Fatal = "the report is not JSON: " + err.Error()
		}
		rep.cookieHeader = r.Header.Get("Cookie")
		select {
		case reports <- rep:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /favicon.ico", http.NotFound)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, reports
}

// runChromium loads pageURL in a fresh headless Chromium and returns the
// page's report. It waits for the report, at most two minutes (the page
// takes about a second; each of its attacks is bounded to 3 s), and then
// ends Chromium.
func runChromium(t *testing.T, chromium, pageURL string, reports <-chan pageReport) pageReport {
	t.Helper()
	// The flags that work on this kind of machine: no sandbox (root), no GPU,
	// and none of the background connections to Google's hosts, which the
	// closed network refuses.
	cmd := exec.Command(chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		"--host-resolver-rules=MAP attacker.test 127.0.0.1",
		// The page opens windows without a click, as a page the user
		// clicked on could.
		"--disable-popup-blocking",
		pageURL)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Chromium's helper processes share its process group, so that they
	// can all be ended together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	t.Cleanup(stop)

	select {
	case rep := <-reports:
		stop()
		return rep
	case err := <-exited:
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("chromium exited (%v) before the page reported; its output:\n%.5000s", err, out)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the page did not report within two minutes; chromium's output:\n%.5000s", out)
	}
	return pageReport{}
}

// attackNames are the attacks the page makes on every route, in its order.
var attackNames = []string{
	"sendBeacon",
	"fetch cors", "fetch no-cors",
	"fetch with Metadata: true", "fetch with X-IDENTITY-HEADER",
	"fetch POST application/json", "fetch POST text/plain", "fetch no-cors POST form",
	"img", "script", "iframe",
	"form POST urlencoded", "form POST text/plain",
	"top-level GET", "top-level form POST",
}

// attackPage is the attacker's page. It sends the beacons first (the page
// cannot see when a beacon has gone; the other attacks take long enough),
// then makes the other attacks one after the other, each bounded, then opens
// the top-level windows all at once, and posts what it could read to
// /report.
const attackPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>attacker</title></head><body>
<script>
"use strict";
const cfg = CONFIG;
const body = '{"query":"Heartbeat | take 1"}';
let frames = 0;

function target(path, attack) {
  return cfg.broker + path + (path.indexOf("?") >= 0 ? "&" : "?") + "attack=" + encodeURIComponent(attack);
}

// bounded settles with a timeout outcome when p has not settled in 3 s.
function bounded(p) {
  return Promise.race([p, new Promise(function (resolve) {
    setTimeout(function () { resolve({outcome: "timeout"}); }, 3000);
  })]);
}

function viaFetch(init) {
  return function (url) {
    return bounded(fetch(url, init).then(async function (res) {
      const r = {outcome: "response", type: res.type, status: res.status, body: ""};
      try { r.body = await res.text(); } catch (e) { r.body = ""; }
      return r;
    }, function (e) { return {outcome: "error: " + e.name}; }));
  };
}

function viaElement(tag) {
  return function (url) {
    return bounded(new Promise(function (resolve) {
      const el = document.createElement(tag);
      el.onload = function () { resolve({outcome: "load"}); };
      el.onerror = function () { resolve({outcome: "error event"}); };
      el.src = url;
      document.body.appendChild(el);
    }));
  };
}

// frameResult reports what the page can see of a frame's document: nothing,
// unless the browser lets it open the document.
function frameResult(frame) {
  let doc = null;
  try { doc = frame.contentDocument; } catch (e) { doc = null; }
  if (doc && doc.documentElement) {
    return {outcome: "load", type: "document", body: doc.documentElement.outerHTML};
  }
  return {outcome: "load"};
}

function viaFrame(url) {
  return bounded(new Promise(function (resolve) {
    const frame = document.createElement("iframe");
    frame.onload = function () { resolve(frameResult(frame)); };
    frame.src = url;
    document.body.appendChild(frame);
  }));
}

// submit posts a form with one field to url into the window or frame named
// name.
function submit(url, enctype, name) {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = url;
  form.enctype = enctype;
  form.target = name;
  const input = document.createElement("input");
  input.type = "hidden";
  if (enctype === "text/plain") {
    // The body becomes {"query":"Heartbeat | take 1","pad":"="}.
    input.name = '{"query":"Heartbeat | take 1","pad":"';
    input.value = '"}';
  } else {
    input.name = "query";
    input.value = "Heartbeat | take 1";
  }
  form.appendChild(input);
  document.body.appendChild(form);
  form.submit();
}

function viaForm(enctype) {
  return function (url) {
    return bounded(new Promise(function (resolve) {
      const name = "frame" + (++frames);
      const frame = document.createElement("iframe");
      frame.name = name;
      document.body.appendChild(frame);
      frame.onload = function () { resolve(frameResult(frame)); };
      submit(url, enctype, name);
    }));
  };
}

// viaWindow navigates a new top-level window to the broker, with a link's
// GET or a form's POST. The page cannot see the answer arrive; it sees the
// window's document become another origin's.
function viaWindow(method) {
  return function (url) {
    return bounded(new Promise(function (resolve) {
      const name = "window" + (++frames);
      const w = window.open(method === "GET" ? url : "about:blank", name);
      if (!w) {
        resolve({outcome: "no window"});
        return;
      }
      if (method === "POST") {
        submit(url, "application/x-www-form-urlencoded", name);
      }
      const poll = setInterval(function () {
        let href = "";
        try { href = w.location.href; } catch (e) {
          clearInterval(poll);
          w.close();
          resolve({outcome: "navigated"});
          return;
        }
        if (href !== "about:blank" && href !== "") {
          clearInterval(poll);
          const r = {outcome: "navigated", type: "document", body: w.document.documentElement.outerHTML};
          w.close();
          resolve(r);
        }
      }, 10);
    }));
  };
}

const attacks = [
  ["fetch cors", viaFetch({mode: "cors"})],
  ["fetch no-cors", viaFetch({mode: "no-cors"})],
  ["fetch with Metadata: true", viaFetch({mode: "cors", headers: {"Metadata": "true"}})],
  ["fetch with X-IDENTITY-HEADER", viaFetch({mode: "cors", headers: {"X-IDENTITY-HEADER": cfg.identityHeader}})],
  ["fetch POST application/json", viaFetch({mode: "cors", method: "POST", headers: {"Content-Type": "application/json"}, body: body})],
  ["fetch POST text/plain", viaFetch({mode: "cors", method: "POST", body: body})],
  ["fetch no-cors POST form", viaFetch({mode: "no-cors", method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "query=Heartbeat%20%7C%20take%201"})],
  ["img", viaElement("img")],
  ["script", viaElement("script")],
  ["iframe", viaFrame],
  ["form POST urlencoded", viaForm("application/x-www-form-urlencoded")],
  ["form POST text/plain", viaForm("text/plain")],
];

// windowAttacks open top-level windows, each a new process that takes a
// fraction of a second to start: they run on all routes at once.
const windowAttacks = [
  ["top-level GET", viaWindow("GET")],
  ["top-level form POST", viaWindow("POST")],
];

async function main() {
  const results = [];
  for (const route of cfg.routes) {
    let queued = false;
    try { queued = navigator.sendBeacon(target(route.path, "sendBeacon"), body); } catch (e) { queued = false; }
    results.push({route: route.name, attack: "sendBeacon", outcome: queued ? "queued" : "refused"});
  }
  for (const route of cfg.routes) {
    for (const [name, attack] of attacks) {
      const r = await attack(target(route.path, name));
      r.route = route.name;
      r.attack = name;
      results.push(r);
    }
  }
  const opened = [];
  for (const route of cfg.routes) {
    for (const [name, attack] of windowAttacks) {
      opened.push(attack(target(route.path, name)).then(function (r) {
        r.route = route.name;
        r.attack = name;
        return r;
      }));
    }
  }
  return results.concat(await Promise.all(opened));
}

main().then(function (results) {
  return fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({results: results, cookies: document.cookie})});
}, function (e) {
  return fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({fatal: String(e && e.stack || e)})});
});
</script>
</body></html>
`
