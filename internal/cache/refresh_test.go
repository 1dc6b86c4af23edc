package cache

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

func TestRefresh(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	var fail sync.Map // scope → error to answer
	src.token = func(_ context.Context, key Key, n int) (azure.Token, error) {
		if err, ok := fail.Load(key.Scope); ok {
			return azure.Token{}, err.(error)
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)
	la, kv, none := testKey, keyFor("https://vault.azure.net/.default"), keyFor("https://never.example/.default")
	first := mustGet(t, c, la).Token.AccessToken
	mustGet(t, c, kv)

	got := c.Keys()
	slices.SortFunc(got, func(a, b Key) int { return strings.Compare(a.Scope, b.Scope) })
	if want := []Key{la, kv}; !slices.Equal(got, want) {
		t.Errorf("Keys() = %v, want %v", got, want)
	}

	fail.Store(kv.Scope, transientErr(503, 0))
	errs := c.Refresh(context.Background(), la, kv, none)
	if errs[0] != nil {
		t.Errorf("Refresh(la) = %v, want nil", errs[0])
	}
	var ce *Error
	var ae *azure.Error
	if !errors.As(errs[1], &ce) || !errors.As(errs[1], &ae) || ae.StatusCode != 503 {
		t.Errorf("Refresh(kv) = %v, want an *Error wrapping the 503", errs[1])
	}
	if !errors.Is(errs[2], ErrNotHeld) {
		t.Errorf("Refresh(never held) = %v, want ErrNotHeld", errs[2])
	}
	if tok := mustGet(t, c, la).Token.AccessToken; tok == first {
		t.Errorf("Get after Refresh = %q, the token from before", tok)
	}
	// The failed refresh keeps the token held in service, marked stale.
	if res := mustGet(t, c, kv); !res.Stale || res.Token.AccessToken != "tok-2" {
		t.Errorf("Get(kv) after a failed Refresh = %q stale %v, want tok-2 stale", res.Token.AccessToken, res.Stale)
	}
	if got := src.Calls(); got != 4 {
		t.Errorf("upstream calls = %d, want 4 (two fetches, two refreshes)", got)
	}
}

// TestRefreshJoinsFlight: concurrent refreshes of one key cost one fetch.
func TestRefreshJoinsFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	src := &fakeSource{}
	src.clk = newFakeClock()
	src.token = func(_ context.Context, _ Key, n int) (azure.Token, error) {
		if n > 1 {
			<-release
		}
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)
	mustGet(t, c, testKey)
	// One refresh starts the fetch and waits for it.
	var wg sync.WaitGroup
	wg.Go(func() {
		if errs := c.Refresh(context.Background(), testKey); errs[0] != nil {
			t.Errorf("Refresh = %v", errs[0])
		}
	})
	eventually(t, "the refresh fetch to start", func() bool { return src.Calls() == 2 })
	// Refreshes made while it runs join it: with a context already done
	// they return at once, having started nothing.
	done, stop := context.WithCancel(context.Background())
	stop()
	for range 9 {
		if errs := c.Refresh(done, testKey); errs[0] == nil {
			t.Errorf("Refresh(done context) during a fetch = nil, want the context's error")
		}
	}
	if got := src.Calls(); got != 2 {
		t.Errorf("upstream calls while the refresh runs = %d, want 2", got)
	}
	// Readers keep the held token while the refresh runs.
	if tok := mustGet(t, c, testKey).Token.AccessToken; tok != "tok-1" {
		t.Errorf("Get during Refresh = %q, want tok-1", tok)
	}
	close(release)
	wg.Wait()
	if got := src.Calls(); got != 2 {
		t.Errorf("upstream calls = %d, want 2", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if errs := c.Refresh(ctx, testKey); errs[0] == nil {
		// The fetch may win the race with the cancelled context; either
		// answer is right, but then the token must be fresh.
		if tok := mustGet(t, c, testKey).Token.AccessToken; tok != "tok-3" {
			t.Errorf("Get after Refresh = %q, want tok-3", tok)
		}
	}
	c.Close()
	if errs := c.Refresh(context.Background(), testKey); !errors.Is(errs[0], ErrClosed) {
		t.Errorf("Refresh after Close = %v, want ErrClosed", errs[0])
	}
}

// TestCapabilitiesKeepTokensApart: a CP1 token is a key of its own.
func TestCapabilitiesKeepTokensApart(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	src.clk = newFakeClock()
	var seen sync.Map
	src.token = func(_ context.Context, key Key, n int) (azure.Token, error) {
		seen.Store(n, key.Capabilities)
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, _ := newTest(t, src, Options{}, false)
	cp1 := testKey
	cp1.Capabilities = "cp1"
	plain := mustGet(t, c, testKey).Token.AccessToken
	capable := mustGet(t, c, cp1).Token.AccessToken
	if plain == capable {
		t.Fatalf("the CP1 key was served the plain key's token %q", plain)
	}
	if got := mustGet(t, c, testKey).Token.AccessToken; got != plain {
		t.Errorf("plain key after CP1 fetch = %q, want %q", got, plain)
	}
	if v, _ := seen.Load(2); v != "cp1" {
		t.Errorf("Source saw capabilities %v for the CP1 key, want cp1", v)
	}
}
