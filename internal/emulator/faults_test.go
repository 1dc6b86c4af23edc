package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestFaultAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		fault          Fault
		wantStatus     int
		wantRetryAfter string
		golden         bool
	}{
		{name: "throttle", fault: Fault{Kind: FaultThrottle}, wantStatus: 429, wantRetryAfter: "60", golden: true},
		{name: "throttle-short", fault: Fault{Kind: FaultThrottle, RetryAfter: 1500 * time.Millisecond}, wantStatus: 429, wantRetryAfter: "2"},
		{name: "server-error", fault: Fault{Kind: FaultServerError}, wantStatus: 500, golden: true},
		{name: "unavailable", fault: Fault{Kind: FaultUnavailable}, wantStatus: 503, golden: true},
		{name: "unavailable-retry-after", fault: Fault{Kind: FaultUnavailable, RetryAfter: 5 * time.Second}, wantStatus: 503, wantRetryAfter: "5"},
		{name: "malformed-body", fault: Fault{Kind: FaultMalformedBody}, wantStatus: 200, golden: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.e.InjectFault(testClient, tt.fault)
			r := newTokenRequest(http.MethodPost, testTenant, credentialForm())
			r.Header.Set("client-request-id", requestID)
			res, body := serve(t, f.e, r)
			if res.StatusCode != tt.wantStatus || res.Header.Get("Retry-After") != tt.wantRetryAfter {
				t.Errorf("status, Retry-After = %d, %q, want %d, %q", res.StatusCode, res.Header.Get("Retry-After"), tt.wantStatus, tt.wantRetryAfter)
			}
			if tt.fault.Kind == FaultMalformedBody {
				var v any
				if json.Unmarshal(body, &v) == nil {
					t.Errorf("malformed body %q parses as JSON", body)
				}
			}
			if tt.golden {
				checkGolden(t, "faults/"+tt.name+".golden", goldenExchange(res, body))
			}
			// One request only: the next is answered normally.
			if res, body := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, credentialForm())); res.StatusCode != http.StatusOK {
				t.Errorf("request after the fault: status %d, want 200: %s", res.StatusCode, body)
			}
		})
	}
}

func TestFaultQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.e.InjectFault(strings.ToUpper(testClient), Fault{Kind: FaultThrottle, Times: 2})
	f.e.InjectFault(testClient, Fault{Kind: FaultServerError})
	var got []int
	for range 4 {
		res, _ := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, credentialForm()))
		got = append(got, res.StatusCode)
	}
	if want := []int{429, 429, 500, 200}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	// Faults are per app; ClearFaults drops what is queued.
	f.e.InjectFault(testClient, Fault{Kind: FaultServerError, Times: 5})
	if res, _ := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, with(credentialForm(), map[string][]string{"client_id": {longLivedClient}}))); res.StatusCode != 200 {
		t.Errorf("other app: status %d, want 200", res.StatusCode)
	}
	f.e.ClearFaults(testClient)
	if res, _ := serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, credentialForm())); res.StatusCode != 200 {
		t.Errorf("after ClearFaults: status %d, want 200", res.StatusCode)
	}
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := httptest.NewServer(f.e)
	t.Cleanup(srv.Close)
	post := func(ctx context.Context) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(credentialForm().Encode()))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := srv.Client().Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, nil
	}

	t.Run("released", func(t *testing.T) {
		release := make(chan struct{})
		reached := make(chan struct{}, 1)
		f.e.InjectFault(testClient, Fault{Kind: FaultDelay, Release: release, Reached: reached})
		done := make(chan int)
		go func() {
			code, _ := post(context.Background())
			done <- code
		}()
		<-reached
		select {
		case code := <-done:
			t.Fatalf("answered %d before release", code)
		default:
		}
		close(release)
		if code := <-done; code != http.StatusOK {
			t.Errorf("after release: status %d, want 200", code)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		reached := make(chan struct{}, 1)
		f.e.InjectFault(testClient, Fault{Kind: FaultDelay, Reached: reached}) // holds until the context ends
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() {
			_, err := post(ctx)
			errc <- err
		}()
		<-reached
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled request: error %v, want context.Canceled", err)
		}
	})
	t.Run("short", func(t *testing.T) {
		f.e.InjectFault(testClient, Fault{Kind: FaultDelay, Delay: time.Millisecond})
		if code, err := post(context.Background()); err != nil || code != http.StatusOK {
			t.Errorf("after a short delay: %d, %v, want 200", code, err)
		}
	})
	t.Run("drop connection", func(t *testing.T) {
		f.e.InjectFault(testClient, Fault{Kind: FaultDropConnection})
		if code, err := post(context.Background()); err == nil {
			t.Errorf("dropped connection: status %d, want a transport error", code)
		}
		if code, err := post(context.Background()); err != nil || code != http.StatusOK {
			t.Errorf("after the drop: %d, %v, want 200", code, err)
		}
	})
}

func TestDropConnectionTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := httptest.NewUnstartedServer(f.e)
	srv.EnableHTTP2 = true // no hijacking on HTTP/2: the stream is reset
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.e.InjectFault(testClient, Fault{Kind: FaultDropConnection})
	res, err := srv.Client().PostForm(srv.URL+"/"+testTenant+"/oauth2/v2.0/token", credentialForm())
	if err == nil {
		res.Body.Close()
		t.Fatalf("dropped HTTP/2 stream: status %d, want a transport error", res.StatusCode)
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	send := func(form url.Values) {
		serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, form))
	}
	send(credentialForm())
	send(with(credentialForm(), map[string][]string{"scope": {laScope + " openid offline_access profile"}}))
	send(with(credentialForm(), map[string][]string{"client_secret": {"wrong"}}))
	send(with(credentialForm(), map[string][]string{"scope": {"https://management.azure.com/.default"}}))
	send(with(credentialForm(), map[string][]string{"client_id": {longLivedClient}}))
	f.e.InjectFault(testClient, Fault{Kind: FaultThrottle})
	send(credentialForm())
	serve(t, f.e, httptest.NewRequest(http.MethodGet, "/"+testTenant+"/oauth2/v2.0/token", nil))
	serve(t, f.e, httptest.NewRequest(http.MethodGet, "/"+testTenant+"/v2.0/.well-known/openid-configuration", nil))

	for _, tt := range []struct {
		client, scope string
		want          int
	}{
		{testClient, laScope, 4},
		{strings.ToUpper(testClient), laScope + " openid", 4},
		{testClient, "https://management.azure.com/.default", 1},
		{testClient, "", 5},
		{longLivedClient, laScope, 1},
		{unknownClient, "", 0},
	} {
		if got := f.e.Requests(tt.client, tt.scope); got != tt.want {
			t.Errorf("Requests(%s, %q) = %d, want %d", tt.client, tt.scope, got, tt.want)
		}
	}
	if got := f.e.TotalRequests(); got != 7 {
		t.Errorf("TotalRequests() = %d, want 7 (token endpoint only, any method)", got)
	}
	f.e.ResetCounters()
	if got := f.e.TotalRequests() + f.e.Requests(testClient, ""); got != 0 {
		t.Errorf("after ResetCounters: %d requests, want 0", got)
	}
}

// TestConcurrency runs requests, registrations, faults and reads at once;
// it proves itself under -race.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := httptest.NewServer(f.e)
	t.Cleanup(srv.Close)
	const workers, perWorker = 8, 10
	var wg sync.WaitGroup
	statuses := make(chan int, workers*perWorker)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				res, err := srv.Client().PostForm(srv.URL+"/"+testTenant+"/oauth2/v2.0/token", credentialForm())
				if err != nil {
					t.Error(err)
					return
				}
				var a tokenAnswer
				_ = json.NewDecoder(res.Body).Decode(&a)
				res.Body.Close()
				statuses <- res.StatusCode
				if res.StatusCode == http.StatusOK {
					if _, err := f.e.VerifyAccessToken(a.AccessToken); err != nil {
						t.Errorf("VerifyAccessToken = %v", err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for i := range perWorker {
			f.e.InjectFault(testClient, Fault{Kind: FaultServerError})
			_ = f.e.Grant(testClient, "https://api.loganalytics.io", "Data.Read", fmt.Sprint("Role", i))
			_ = f.e.SetSecrets(testClient, Secret{Value: testSecret}, Secret{Value: fmt.Sprint("extra", i)})
			_ = f.e.AddTenant(Tenant{ID: fmt.Sprintf("6f1c2a9e-1111-4000-8000-%012d", 100+i)})
			_ = f.e.Requests(testClient, laScope)
			f.e.RevokeTokens(longLivedClient)
			_ = f.e.Describe(io.Discard, srv.URL)
		}
	})
	wg.Wait()
	close(statuses)
	ok, faulted := 0, 0
	for s := range statuses {
		switch s {
		case http.StatusOK:
			ok++
		case http.StatusInternalServerError:
			faulted++
		default:
			t.Errorf("unexpected status %d", s)
		}
	}
	if ok+faulted != workers*perWorker || faulted > perWorker {
		t.Errorf("%d ok + %d faulted, want %d in all and at most %d faulted", ok, faulted, workers*perWorker, perWorker)
	}
	if got := f.e.Requests(testClient, laScope); got != workers*perWorker {
		t.Errorf("Requests = %d, want %d", got, workers*perWorker)
	}
}

// TestNoSecretsInLogs proves that neither the client secret, a wrong secret,
// an assertion nor an issued token reaches the log.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	f := newFixture(t, func(o *Options) { o.Logger = zap.New(core) })
	_, a := getToken(t, f.e, testTenant, credentialForm())
	const wrong, assertion = "wrong-secret-value-123", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl"
	serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, with(credentialForm(), map[string][]string{"client_secret": {wrong}})))
	serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, assertionForm(assertion)))
	f.e.InjectFault(testClient, Fault{Kind: FaultServerError})
	serve(t, f.e, newTokenRequest(http.MethodPost, testTenant, credentialForm()))
	if logs.Len() != 4 {
		t.Errorf("%d log entries, want 4 (one per request)", logs.Len())
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, entry := range logs.All() {
		buf, err := enc.EncodeEntry(entry.Entry, entry.Context)
		if err != nil {
			t.Fatal(err)
		}
		line := buf.String()
		for _, secret := range []string{testSecret, wrong, assertion, a.AccessToken} {
			if strings.Contains(line, secret) {
				t.Errorf("log line %s contains a secret or token", line)
			}
		}
	}
}
