package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/config"
)

// Timeouts of `broker check`. Each check is one request that nobody retries.
const (
	// checkTokenTimeout bounds one token request to Entra ID.
	checkTokenTimeout = 30 * time.Second
	// checkQueryTimeout bounds the `print 1` query; Log Analytics answers
	// it in well under a second, but a cold workspace can take a while.
	checkQueryTimeout = 60 * time.Second
	// maxCheckBody bounds the query answer read.
	maxCheckBody = 1 << 20
	// checkWaitFirst and checkWaitMax are the backoff of --wait: a role
	// assignment reaches the services within minutes to an hour, so trying
	// every 5 s at first and every 2 minutes at most finds it soon after
	// without a wall of requests.
	checkWaitFirst = 5 * time.Second
	checkWaitMax   = 2 * time.Minute
)

// checkSleepKey, when set in the context, is how `broker check --wait`
// waits between attempts: tests advance the emulator's clock instead.
type checkSleepKey struct{}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkResult is one line of `broker check`: the JSON form (--json) is a
// stable array of these, with every field always present.
type checkResult struct {
	// Check names what was checked: "config", "token:<identity>" or
	// "query:<identity>"; "warning" is a configuration that works but should
	// not be left so (OK, with a hint).
	Check string `json:"check"`
	// OK reports that the check passed.
	OK bool `json:"ok"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Hint says what to do when the check failed or warns; empty when it
	// passed.
	Hint string `json:"hint"`
	// Setting names the setting to change for a configuration problem or
	// warning (see config.Problem); empty for the other checks.
	Setting string `json:"setting"`
}

// checkClockKey, when set in the context, is the clock of `broker check`:
// tests use it to print stable expiry times.
type checkClockKey struct{}

// checkFailed is the error `broker check` returns when a check failed: the
// checks themselves are already printed.
type checkFailed struct{ failed, total int }

func (e checkFailed) Error() string {
	return fmt.Sprintf("check: %d of %d checks failed", e.failed, e.total)
}

// runCheck validates the configuration, then for each identity fetches a
// token and shows the claims that matter (never the token), and with
// --workspace runs `print 1` in that Log Analytics workspace with the token.
// It prints one line per check (or a JSON array with --json) and returns
// checkFailed when any check failed.
func runCheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var workspace, scope string
	var asJSON bool
	var up uploadCheck
	cfg, _, err := loadConfig("check", args, getenv, stdout, config.Serve, func(fs *flag.FlagSet) {
		fs.StringVar(&workspace, "workspace", "", "the `ID` of a Log Analytics workspace (a GUID): run the query \"print 1\" in it with each identity's token")
		fs.StringVar(&scope, "scope", "", "the `scope` of the tokens to fetch (default: the cloud's Log Analytics scope)")
		fs.StringVar(&up.dcr, "dcr", "", "the immutable `ID` (dcr-…) of a data collection rule: upload an empty array to it through BROKER_INGESTION_ENDPOINT with each identity's token (needs --stream)")
		fs.StringVar(&up.stream, "stream", "", "the `name` of the DCR's stream for --dcr, e.g. Custom-MyTable_CL")
		fs.DurationVar(&up.wait, "wait", 0, "keep trying the --workspace and --dcr checks with backoff for up to this `long` (e.g. 60m) while the role assignment propagates, printing the time elapsed")
		fs.BoolVar(&asJSON, "json", false, "print the checks as a JSON array of {check, ok, detail, hint, setting}")
	})
	var ce configError
	switch {
	case errors.As(err, &ce):
		// Reported below as failed checks.
	case err != nil:
		return err
	}
	now := time.Now
	if c, ok := ctx.Value(checkClockKey{}).(func() time.Time); ok {
		now = c
	}
	ck := &checker{now: now, sleep: sleepCtx, progress: stderr}
	if sl, ok := ctx.Value(checkSleepKey{}).(func(context.Context, time.Duration) error); ok {
		ck.sleep = sl
	}
	if ce.problems != nil {
		for _, p := range ce.problems {
			ck.results = append(ck.results, checkResult{Check: "config", Detail: p.Problem, Hint: fixHint(p.Fix), Setting: p.Setting})
		}
	} else {
		ck.run(ctx, cfg, workspace, scope, up, stderr)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ck.results); err != nil {
			return err
		}
	} else {
		printChecks(stdout, ck.results)
	}
	if failed, warned := tally(ck.results); failed > 0 {
		return checkFailed{failed, len(ck.results) - warned}
	}
	return nil
}

// uploadCheck is what --dcr, --stream and --wait ask for.
type uploadCheck struct {
	dcr, stream string
	wait        time.Duration
}

// checker collects the results of `broker check`.
type checker struct {
	now     func() time.Time
	results []checkResult
	// sleep waits between the attempts of --wait; progress gets a line
	// per attempt that failed.
	sleep    func(context.Context, time.Duration) error
	progress io.Writer
}

// retrying runs attempt, which adds one result and reports whether it
// failed in a way that time may cure (a role assignment not yet
// propagated), again with backoff until it passes or wait is spent, and
// keeps only the last result, with the time waited.
func (c *checker) retrying(ctx context.Context, wait time.Duration, attempt func() bool) {
	start := c.now()
	delay := checkWaitFirst
	for {
		n := len(c.results)
		retry := attempt()
		elapsed := c.now().Sub(start)
		if !retry || wait <= 0 || elapsed+delay > wait {
			if wait > 0 && elapsed > 0 {
				c.results[n].Detail += fmt.Sprintf(" (after %s of --wait %s)", elapsed.Round(time.Second), wait)
			}
			return
		}
		r := c.results[n]
		c.results = c.results[:n]
		fmt.Fprintf(c.progress, "%s: still failing after %s: %s; trying again in %s (--wait %s)\n", r.Check, elapsed.Round(time.Second), r.Detail, delay, wait)
		if err := c.sleep(ctx, delay); err != nil {
			c.results = append(c.results, r)
			return
		}
		delay = min(2*delay, checkWaitMax)
	}
}

func (c *checker) pass(check, detail string) {
	c.results = append(c.results, checkResult{Check: check, OK: true, Detail: detail})
}

func (c *checker) fail(check, detail, hint string) {
	c.results = append(c.results, checkResult{Check: check, Detail: detail, Hint: hint})
}

// tally counts the failed checks and the warnings (which are not checks).
func tally(results []checkResult) (failed, warned int) {
	for _, r := range results {
		switch {
		case !r.OK:
			failed++
		case r.Hint != "":
			warned++
		}
	}
	return failed, warned
}

// run performs the checks of a valid configuration.
func (c *checker) run(ctx context.Context, cfg config.Config, workspace, scope string, up uploadCheck, stderr io.Writer) {
	cloud, err := cfg.AzureCloud()
	if err != nil {
		c.fail("config", err.Error(), "Set AZURE_CLOUD to AzurePublic, AzureUSGovernment or AzureChina.")
		return
	}
	if scope == "" {
		scope = cloud.LogAnalytics.Scope()
	} else if scope, err = azure.NormalizeScope(scope); err != nil {
		c.fail("config", "--scope: "+describe(err), hintOf(err))
		return
	}
	ids := cfg.Served()
	var names []string
	for _, id := range ids {
		names = append(names, id.Name)
	}
	authority := cloud.AuthorityHost
	if cfg.AuthorityHost != "" {
		authority = strings.TrimSuffix(cfg.AuthorityHost, "/")
	}
	c.pass("config", fmt.Sprintf("valid: %d %s (%s), cloud %s, authority %s",
		len(ids), plural(len(ids), "identity", "identities"), strings.Join(names, ", "), cloud.Name, authority))
	for _, w := range cfg.Warnings() {
		c.results = append(c.results, checkResult{Check: "warning", OK: true, Detail: w.Problem, Hint: fixHint(w.Fix), Setting: w.Setting})
	}
	c.callers(cfg)
	switch {
	case up.dcr == "" && up.stream == "":
	case up.dcr == "" || up.stream == "":
		c.fail("dcr", "--dcr and --stream go together", "Name the DCR's immutable ID with --dcr dcr-… and one of its streams with --stream Custom-<table>.")
		up.dcr = ""
	case !strings.HasPrefix(up.dcr, "dcr-"):
		c.fail("dcr", fmt.Sprintf("--dcr %q is not a DCR's immutable ID", up.dcr),
			"Use the immutable ID (dcr-…), shown on the DCR's JSON view in the portal or by az monitor data-collection rule show --query immutableId, not its name or resource ID.")
		up.dcr = ""
	case cfg.IngestionEndpoint == "":
		c.fail("dcr", "--dcr needs BROKER_INGESTION_ENDPOINT", "Set BROKER_INGESTION_ENDPOINT to the data collection endpoint (or the DCR's logs-ingestion endpoint) that serves the DCR.")
		up.dcr = ""
	}
	if workspace != "" && !azure.IsGUID(workspace) {
		c.fail("workspace", fmt.Sprintf("--workspace %q is not a workspace ID", workspace),
			"Use the Workspace ID, a GUID on the workspace's Overview page in the Azure portal (not its name or resource ID).")
		workspace = ""
	}

	// Warnings and info of the token clients would only repeat what the
	// checks print; errors still reach stderr.
	log, err := newLogger(cfg, stderr)
	if err != nil {
		log = zap.NewNop()
	}
	log = log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel))
	endpoint := cloud.LogAnalytics.Endpoint
	for _, id := range ids {
		tok, ok := c.token(ctx, cfg, cloud, id, "token:"+id.Name, scope, log)
		if ok && workspace != "" {
			c.retrying(ctx, up.wait, func() bool { return c.query(ctx, id, endpoint, workspace, tok) })
		}
		if up.dcr == "" {
			continue
		}
		itok, ok := c.token(ctx, cfg, cloud, id, "ingestion-token:"+id.Name, cloud.LogsIngestion.Scope(), log)
		if ok {
			c.retrying(ctx, up.wait, func() bool { return c.upload(ctx, id, strings.TrimSuffix(cfg.IngestionEndpoint, "/"), up, itok) })
		}
	}
}

// tokenClaims are the claims `broker check` shows.
type tokenClaims struct {
	Audience jsonStrings `json:"aud"`
	TenantID string      `json:"tid"`
	AppID    string      `json:"appid"`
	AZP      string      `json:"azp"` // the client ID in v2.0 tokens
	Roles    []string    `json:"roles"`
	Expiry   int64       `json:"exp"`
}

// jsonStrings is a JWT claim that is a string or a list of strings.
type jsonStrings []string

func (s *jsonStrings) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// decodeClaims decodes a JWT's claims WITHOUT verifying its signature: the
// broker is the token's client here, not its audience, and only shows what
// the token says.
func decodeClaims(token string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, errors.New("not a JWT")
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, errors.New("not a JWT")
	}
	return c, nil
}

// token fetches the identity's token for scope and checks its claims. It
// returns the token for the query check; the token itself is never printed.
func (c *checker) token(ctx context.Context, cfg config.Config, cloud azure.Cloud, id config.Identity, check, scope string, log *zap.Logger) (string, bool) {
	client, _, err := newClient(id, cfg, cloud, log)
	if err != nil {
		c.fail(check, describe(err), hintOf(err))
		return "", false
	}
	tctx, cancel := context.WithTimeout(ctx, checkTokenTimeout)
	defer cancel()
	tok, err := client.Token(tctx, scope)
	if err != nil {
		c.fail(check, describe(err), hintOf(err))
		return "", false
	}
	claims, err := decodeClaims(tok.AccessToken)
	if err != nil {
		c.fail(check, "Entra ID answered a token that is not a JWT ("+scope+")",
			"Check AZURE_AUTHORITY_HOST: it must be Entra ID (or the emulator), not a proxy that rewrites answers.")
		return "", false
	}
	appID := claims.AppID
	if appID == "" {
		appID = claims.AZP
	}
	roles := "none"
	if len(claims.Roles) > 0 {
		roles = strings.Join(claims.Roles, ",")
	}
	exp := time.Unix(claims.Expiry, 0).UTC()
	detail := fmt.Sprintf("aud=%s tid=%s appid=%s roles=%s exp=%s (in %s)",
		strings.Join(claims.Audience, ","), claims.TenantID, appID, roles, exp.Format(time.RFC3339), minutes(exp.Sub(c.now())))
	wantAud := strings.TrimSuffix(scope, "/.default")
	switch {
	case !strings.EqualFold(appID, id.ClientID):
		c.fail(check, detail, "The token names another app than the configured client ID "+id.ClientID+": check AZURE_AUTHORITY_HOST.")
	case azure.IsGUID(id.TenantID) && !strings.EqualFold(claims.TenantID, id.TenantID):
		c.fail(check, detail, "The token comes from another tenant than the configured "+id.TenantID+": check the tenant ID.")
	case !audienceMatches(claims.Audience, wantAud):
		c.fail(check, detail, "The token's audience is not "+wantAud+": check AZURE_CLOUD and the scope.")
	default:
		c.pass(check, detail)
	}
	return tok.AccessToken, true
}

// audienceMatches reports whether one of auds is want, ignoring a trailing
// slash (Entra writes the audience as the resource was registered).
func audienceMatches(auds []string, want string) bool {
	for _, a := range auds {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(want, "/")) {
			return true
		}
	}
	return false
}

// laError is the Log Analytics error body.
type laError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"innererror"`
	} `json:"error"`
}

// query runs `print 1` in workspace with token and explains the answer. It
// reports whether the failure is one time may cure (the role assignment is
// propagating).
func (c *checker) query(ctx context.Context, id config.Identity, endpoint, workspace, token string) bool {
	check := "query:" + id.Name
	u := endpoint + "/v1/workspaces/" + url.PathEscape(workspace) + "/query"
	qctx, cancel := context.WithTimeout(ctx, checkQueryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(qctx, http.MethodPost, u, strings.NewReader(`{"query":"print 1"}`))
	if err != nil {
		c.fail(check, "cannot build the query request: "+err.Error(), "Check BROKER_LOGANALYTICS_ENDPOINT.")
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The URL error names the URL (no token in it), not the request.
		c.fail(check, "Log Analytics could not be reached at "+endpoint+": "+redactToken(err.Error(), token),
			"Check the network path to "+endpoint+" (proxy, firewall, DNS) and BROKER_LOGANALYTICS_ENDPOINT.")
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	var e laError
	_ = json.Unmarshal(body, &e)
	code := e.Error.Code
	if e.Error.InnerError != nil && e.Error.InnerError.Code != "" {
		code += "/" + e.Error.InnerError.Code
	}
	what := fmt.Sprintf("workspace %s: %d %s", workspace, resp.StatusCode, code)
	if code == "" {
		what = fmt.Sprintf("workspace %s: %d %s", workspace, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		c.pass(check, fmt.Sprintf("workspace %s: print 1 ran: the identity can query the workspace", workspace))
	case resp.StatusCode == http.StatusForbidden && e.Error.Code == "InsufficientAccessError":
		c.fail(check, what+": the identity has no role on the workspace, or its role assignment is still propagating",
			fmt.Sprintf("Assign Log Analytics Reader (or Reader) on the workspace to the app %s (Access control (IAM) → Add role assignment → the app's name). A new assignment takes up to 60 minutes to reach the Log Analytics API: if you just made it, run broker check --wait 60m to wait for it.", id.ClientID))
		return true
	case resp.StatusCode == http.StatusForbidden:
		c.fail(check, what+": Log Analytics does not accept the token",
			"The token must be for https://api.loganalytics.io in the workspace's cloud: check AZURE_CLOUD and BROKER_LOGANALYTICS_ENDPOINT, and that the workspace's tenant is the identity's tenant.")
	case resp.StatusCode == http.StatusUnauthorized:
		c.fail(check, what+": Log Analytics refused the token",
			"The token expired or was not accepted: check the machine's clock, that the workspace is in the identity's tenant ("+id.TenantID+"), and AZURE_CLOUD.")
	case resp.StatusCode == http.StatusNotFound:
		c.fail(check, what+": the query path does not exist at "+endpoint,
			"BROKER_LOGANALYTICS_ENDPOINT must be the API's base URL, such as https://api.loganalytics.azure.com (no /v1, no workspace path).")
	case resp.StatusCode == http.StatusBadRequest && e.Error.Code == "FailedToResolveResource":
		c.fail(check, what+": no workspace has this ID",
			"Use the Workspace ID from the workspace's Overview page (a GUID), not its name or resource ID, and check that the workspace is in this cloud ("+endpoint+").")
	case resp.StatusCode == http.StatusBadRequest:
		c.fail(check, what+": Log Analytics refused the query request",
			"Check that --workspace is the Workspace ID from the workspace's Overview page and BROKER_LOGANALYTICS_ENDPOINT is the API's base URL.")
	default:
		c.fail(check, what+": Log Analytics did not run the query",
			"Log Analytics may be unavailable or throttling: run broker check again in a few minutes.")
	}
	return false
}

// upload sends an empty array to the DCR's stream with token, which checks
// the endpoint, the token's audience and the role without storing anything,
// and explains the answer. It reports whether the failure is one time may
// cure (the role assignment is propagating).
func (c *checker) upload(ctx context.Context, id config.Identity, endpoint string, up uploadCheck, token string) bool {
	check := "ingestion:" + id.Name
	u := endpoint + "/dataCollectionRules/" + url.PathEscape(up.dcr) + "/streams/" + url.PathEscape(up.stream) + "?api-version=2023-01-01"
	qctx, cancel := context.WithTimeout(ctx, checkQueryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(qctx, http.MethodPost, u, strings.NewReader("[]"))
	if err != nil {
		c.fail(check, "cannot build the upload request: "+err.Error(), "Check BROKER_INGESTION_ENDPOINT.")
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.fail(check, "the Logs Ingestion endpoint could not be reached at "+endpoint+": "+redactToken(err.Error(), token),
			"Check the network path to "+endpoint+" (proxy, firewall, DNS) and BROKER_INGESTION_ENDPOINT.")
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	var e laError
	_ = json.Unmarshal(body, &e)
	what := fmt.Sprintf("%s stream %s: %d %s", up.dcr, up.stream, resp.StatusCode, e.Error.Code)
	if e.Error.Code == "" {
		what = fmt.Sprintf("%s stream %s: %d %s", up.dcr, up.stream, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	switch {
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
		c.pass(check, fmt.Sprintf("%s stream %s: an empty upload was accepted: the identity can send logs", up.dcr, up.stream))
	case resp.StatusCode == http.StatusForbidden:
		c.fail(check, what+": the identity has no Monitoring Metrics Publisher role on the DCR, or its assignment is still propagating",
			fmt.Sprintf("Assign Monitoring Metrics Publisher on the data collection rule (not the workspace) to the app %s. A new assignment takes up to 30 minutes to reach the service: run broker check --dcr %s --stream %s --wait 60m to wait for it.", id.ClientID, up.dcr, up.stream))
		return true
	case resp.StatusCode == http.StatusNotFound:
		c.fail(check, what+": the service knows no such DCR or stream at "+endpoint,
			"Use the DCR's immutable ID (dcr-…, not its name), a stream declared in it (Custom-<table>), and the endpoint of the DCE or DCR that serves it (BROKER_INGESTION_ENDPOINT).")
	case resp.StatusCode == http.StatusUnauthorized:
		c.fail(check, what+": the service refused the token",
			"The token must be for https://monitor.azure.com in the DCR's cloud: check AZURE_CLOUD, the machine's clock, and that the DCR is in the identity's tenant ("+id.TenantID+").")
	default:
		c.fail(check, what+": the service did not take the upload",
			"The Logs Ingestion API may be unavailable or throttling: run broker check again in a few minutes.")
	}
	return false
}

// describe is the one-line account of a token failure: Entra's sentence when
// there is one.
func describe(err error) string {
	var ae *azure.Error
	if errors.As(err, &ae) {
		if ae.Description != "" {
			return ae.Description
		}
		return ae.Error()
	}
	return err.Error()
}

// hintOf is the hint of an Entra failure, or a general one.
func hintOf(err error) string {
	var ae *azure.Error
	if errors.As(err, &ae) && ae.Hint != "" {
		return ae.Hint
	}
	return "Check the identity's settings; broker token --identity <name> shows the same failure with its details."
}

// redactToken removes token from s, should a transport error ever quote it.
func redactToken(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}

// fixHint is the hint of a configuration problem whose fix is fix: the
// fix as a sentence, or a general one when the problem says it all.
func fixHint(fix string) string {
	if fix == "" {
		return "Correct the configuration as the message says, then run broker check again."
	}
	return strings.ToUpper(fix[:1]) + fix[1:] + "."
}

// minutes formats a duration to the minute, e.g. "59m" or "2h05m".
func minutes(d time.Duration) string {
	d = d.Truncate(time.Minute)
	if d < time.Hour {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// printChecks writes one line per check: ✓ or ✗, the check, what was found;
// a failed check is followed by an indented line with the fix.
func printChecks(w io.Writer, results []checkResult) {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Check))
	}
	var b bytes.Buffer
	for _, r := range results {
		mark := "✓"
		switch {
		case !r.OK:
			mark = "✗"
		case r.Hint != "":
			mark = "!"
		}
		fmt.Fprintf(&b, "%s %-*s  %s\n", mark, width, r.Check, r.Detail)
		if r.Hint != "" {
			fmt.Fprintf(&b, "  %*s  fix: %s\n", width, "", r.Hint)
		}
	}
	failed, warned := tally(results)
	warnings := ""
	if warned > 0 {
		warnings = fmt.Sprintf(" (%d %s)", warned, plural(warned, "warning", "warnings"))
	}
	if failed == 0 {
		fmt.Fprintf(&b, "\nAll %d checks passed%s.\n", len(results)-warned, warnings)
	} else {
		fmt.Fprintf(&b, "\n%d of %d checks failed%s.\n", failed, len(results)-warned, warnings)
	}
	_, _ = w.Write(b.Bytes())
}
