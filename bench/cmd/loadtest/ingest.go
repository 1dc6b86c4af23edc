package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/entrabroker/broker/internal/emulator"
	"github.com/entrabroker/broker/internal/emulator/loganalytics"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

// runIngest measures Logs Ingestion throughput: one large JSON array
// through the broker's ingestion route (which splits, gzips and sends it)
// against the same records sent straight to the emulator by a client that
// splits them itself into plain calls under 1 MB with the same concurrency,
// in interleaved rounds. The emulator counts the records and stores nothing,
// so that it measures the senders; the broker's peak RSS is sampled during
// its uploads.
func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerBin := fs.String("broker", "bin/broker", "the broker binary")
	size := fs.Int("size", 20<<20, "bytes of records per upload")
	rounds := fs.Int("rounds", 3, "interleaved rounds")
	conc := fs.Int("concurrency", 4, "calls in flight of the direct client (the broker's default too)")
	maxRSS := fs.Int64("max-rss", 64<<20, "largest broker RSS during an upload that passes, in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := filepath.Abs(*brokerBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("the broker binary: %w (run make build)", err)
	}
	cl, err := startCloud(0)
	if err != nil {
		return err
	}
	defer cl.close()
	// The emulator's ingestion service counts records and keeps none.
	in := logsingestion.New(logsingestion.Options{Verify: verifier(cl.az.Entra), RequestsPerMinute: -1})
	if err := in.AddDemo(loganalytics.DemoWorkspaceID, emulator.DemoClientID); err != nil {
		return err
	}
	cl.az.Ingestion = in

	apiAddr, err := freePort()
	if err != nil {
		return err
	}
	opsAddr, err := freePort()
	if err != nil {
		return err
	}
	env := append(brokerEnv(cl, apiAddr, opsAddr, cl.url), "BROKER_INGESTION_ENDPOINT="+cl.url, "BROKER_LOG_LEVEL=warn")
	p, err := startProcess("broker", "", env, bin, "serve")
	if err != nil {
		return err
	}
	defer p.stop()
	if err := waitReady(ctx, "http://"+opsAddr, p); err != nil {
		return err
	}
	body := makeRecords(*size)
	n := bytes.Count(body, []byte(`"Id":`))
	path := "/dataCollectionRules/" + logsingestion.DemoDCR + "/streams/" + logsingestion.DemoStream + "?api-version=2023-01-01"
	tok, err := clientToken(ctx, cl.url, "https://monitor.azure.com/.default")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loadtest ingest: %d records (%.1f MB) per upload, %d rounds, concurrency %d\n", n, float64(len(body))/1e6, *rounds, *conc)

	var viaBroker, direct []float64
	var peak int64
	missed := false
	for r := range *rounds {
		before := in.Rows()
		stopRSS := sampleRSS(p, &peak)
		start := time.Now()
		res, err := http.Post("http://"+apiAddr+"/proxy/ingestion"+path, "application/json", bytes.NewReader(body))
		if err != nil {
			stopRSS()
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		res.Body.Close()
		d := time.Since(start)
		stopRSS()
		if res.StatusCode != http.StatusNoContent || in.Rows()-before != n {
			fmt.Fprintf(stdout, "  round %d: broker answered %d, %d of %d records stored: %s\n", r+1, res.StatusCode, in.Rows()-before, n, msg)
			missed = true
		}
		viaBroker = append(viaBroker, float64(len(body))/1e6/d.Seconds())

		before = in.Rows()
		start = time.Now()
		if err := sendDirect(ctx, cl.url+path, tok, body, *conc); err != nil {
			return err
		}
		d = time.Since(start)
		if in.Rows()-before != n {
			fmt.Fprintf(stdout, "  round %d: direct: %d of %d records stored\n", r+1, in.Rows()-before, n)
			missed = true
		}
		direct = append(direct, float64(len(body))/1e6/d.Seconds())
		fmt.Fprintf(stdout, "  round %d: through the broker %6.1f MB/s, direct %6.1f MB/s\n", r+1, viaBroker[r], direct[r])
	}
	slices.Sort(viaBroker)
	slices.Sort(direct)
	mb, md := viaBroker[len(viaBroker)/2], direct[len(direct)/2]
	calls := in.Calls()
	largest := 0
	for _, c := range calls {
		largest = max(largest, c.Bytes)
	}
	fmt.Fprintf(stdout, "\nmedian: through the broker %.1f MB/s, direct %.1f MB/s (%.2f ×)\n", mb, md, mb/md)
	fmt.Fprintf(stdout, "calls: %d in all, largest %d bytes; broker peak RSS during its uploads: %.1f MiB (limit %.0f MiB)\n",
		len(calls), largest, float64(peak)/(1<<20), float64(*maxRSS)/(1<<20))
	if largest >= 1_048_576 || peak > *maxRSS {
		missed = true
	}
	if missed {
		return errMissed
	}
	return nil
}

// verifier checks tokens as the Azure emulator's services do.
func verifier(e *emulator.Emulator) loganalytics.Verifier {
	return func(raw string) (loganalytics.Principal, error) {
		c, err := e.VerifyAccessToken(raw)
		if err != nil {
			return loganalytics.Principal{}, err
		}
		return loganalytics.Principal{TenantID: c.TenantID, AppID: c.AppID, ObjectID: c.ObjectID, Audience: c.Audience}, nil
	}
}

// sampleRSS records the process's largest RSS into peak until the returned
// function is called.
func sampleRSS(p *process, peak *int64) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			*peak = max(*peak, p.rss())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// makeRecords returns a JSON array of log-like records of about size bytes.
func makeRecords(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	b.WriteByte('[')
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"TimeGenerated":"2024-05-01T12:%02d:%02dZ","Id":%d,"Computer":"vm-web-%02d","Level":"%s","Message":"request %d served in %d ms by worker %d for tenant %x"}`,
			i/60%60, i%60, i, i%7, []string{"Info", "Warning", "Error"}[i%3], i, i%997, i%13, i*2654435761%(1<<32))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// clientToken fetches a token for scope from the emulator with the demo
// app's secret.
func clientToken(ctx context.Context, base, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {emulator.DemoClientID},
		"client_secret": {emulator.DemoClientSecret}, "scope": {scope}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+emulator.DemoTenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("token from the emulator: status %d: %w", res.StatusCode, err)
	}
	if t.AccessToken == "" {
		return "", fmt.Errorf("token from the emulator: status %d, no access_token", res.StatusCode)
	}
	return t.AccessToken, nil
}

// sendDirect splits body (a JSON array of flat records) into plain calls
// under 1 MB, as a careful client would, and sends them conc at a time.
func sendDirect(ctx context.Context, u, tok string, body []byte, conc int) error {
	var recs [][]byte
	inner := body[1 : len(body)-1]
	for len(inner) > 0 {
		i := bytes.Index(inner, []byte("},{"))
		if i < 0 {
			recs = append(recs, inner)
			break
		}
		recs = append(recs, inner[:i+1])
		inner = inner[i+2:]
	}
	calls := make(chan []byte)
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(c))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusNoContent {
					errs <- errors.New("direct call answered " + strconv.Itoa(res.StatusCode))
					return
				}
			}
		}()
	}
	var cur bytes.Buffer
	flush := func() {
		cur.WriteByte(']')
		calls <- slices.Clone(cur.Bytes())
		cur.Reset()
	}
	for _, r := range recs {
		if cur.Len() > 0 && cur.Len()+len(r)+2 > 1_000_000 {
			flush()
		}
		if cur.Len() == 0 {
			cur.WriteByte('[')
		} else {
			cur.WriteByte(',')
		}
		cur.Write(r)
	}
	if cur.Len() > 0 {
		flush()
	}
	close(calls)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
