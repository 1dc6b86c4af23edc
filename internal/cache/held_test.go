package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/azure"
)

// TestSourceSeesHeldToken: a miss reaches the Source without a held token;
// a refresh carries the token it replaces.
func TestSourceSeesHeldToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string // "" for a miss
	src := &fakeSource{}
	src.token = func(ctx context.Context, _ Key, n int) (azure.Token, error) {
		held, ok := Held(ctx)
		if ok != (held.AccessToken != "") {
			t.Errorf("Held = %v, %v: ok and the token disagree", held, ok)
		}
		mu.Lock()
		seen = append(seen, held.AccessToken)
		mu.Unlock()
		return issue(src.clk, n, time.Hour, 0), nil
	}
	c, clk := newTest(t, src, Options{}, true)
	mustGet(t, c, testKey)
	mustGet(t, c, testKey) // used: worth refreshing
	clk.Advance(31 * time.Minute)
	if src.Calls() != 2 {
		t.Fatalf("Source calls = %d, want 2", src.Calls())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "" || seen[1] != "tok-1" {
		t.Errorf("held tokens seen by the Source = %q, want [\"\" \"tok-1\"]", seen)
	}
}

func TestUsable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hour := azure.Token{AccessToken: "x", IssuedAt: now, ExpiresOn: now.Add(time.Hour)}
	short := azure.Token{AccessToken: "x", IssuedAt: now, ExpiresOn: now.Add(2 * time.Minute)}
	tests := []struct {
		name   string
		tok    azure.Token
		margin time.Duration
		at     time.Time
		want   bool
	}{
		{"fresh", hour, 0, now, true},
		{"just before the default margin", hour, 0, now.Add(54*time.Minute + 59*time.Second), true},
		{"within the default margin", hour, 0, now.Add(55 * time.Minute), false},
		{"within a 10-minute margin", hour, 10 * time.Minute, now.Add(51 * time.Minute), false},
		{"short token: a quarter of its life", short, 0, now.Add(89 * time.Second), true},
		{"short token past three quarters", short, 0, now.Add(90 * time.Second), false},
		{"empty", azure.Token{ExpiresOn: now.Add(time.Hour)}, 0, now, false},
	}
	for _, tt := range tests {
		if got := Usable(tt.tok, tt.margin, tt.at); got != tt.want {
			t.Errorf("%s: Usable = %v, want %v", tt.name, got, tt.want)
		}
	}
}
