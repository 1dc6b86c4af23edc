package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azingest "github.com/Azure/azure-sdk-for-go/sdk/monitor/ingestion/azlogs"
	"github.com/entrabroker/broker/internal/emulator/logsingestion"
)

// TestAzlogsIngestionThroughProxy uploads with the real Go Logs Ingestion
// client, which sends whatever it is given in one call: through the broker
// (a nil credential; the broker adds the token) a 5 MB array lands in calls
// under 1 MB, and the service's refusals come back as azcore errors.
func TestAzlogsIngestionThroughProxy(t *testing.T) {
	t.Parallel()
	e, _ := newIngestEmulated(t, IngestionOptions{})
	client, err := azingest.NewClient(e.proxy.URL+"/proxy/ingestion", nil, &azingest.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000 // about 5 MB
	logs, err := io.ReadAll(records(n, 200, 5))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.Upload(ctx, logsingestion.DemoDCR, logsingestion.DemoStream, logs, nil); err != nil {
		t.Fatalf("Upload(%d bytes) error = %v", len(logs), err)
	}
	calls := e.azure.Ingestion.Calls()
	if len(calls) < 2 {
		t.Errorf("the upload went in %d call(s), want it split", len(calls))
	}
	for _, c := range calls {
		if c.Bytes >= 1_000_000 {
			t.Errorf("a call of %d bytes", c.Bytes)
		}
	}
	if ids := e.storedIDs(t); len(ids) != n {
		t.Errorf("%d records stored, want %d", len(ids), n)
	}

	// Azure's own 404 for a DCR named by its resource name, with the hint.
	_, err = client.Upload(ctx, "my-dcr", logsingestion.DemoStream, []byte(`[{"Id":1}]`), nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("Upload(unknown DCR) error = %v, want a 404 ResponseError", err)
	}
	if hint := re.RawResponse.Header.Get(HintHeader); hint == "" {
		t.Errorf("the 404 has no %s", HintHeader)
	}
}
