package redis

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_780_000_000, 0)
	var states []breakerState
	b := newBreaker(func() time.Time { return now }, 3, time.Second, 4*time.Second, func(s breakerState) { states = append(states, s) })
	fail := func() {
		t.Helper()
		if !b.allow() {
			t.Fatalf("allow() = false in state %d, want true", b.current())
		}
		b.done(false)
	}
	fail()
	fail()
	if b.current() != closed {
		t.Fatalf("state after 2 failures = %d, want closed", b.current())
	}
	fail()
	if b.current() != open || b.allow() {
		t.Fatalf("after 3 failures: state %d, want open refusing calls", b.current())
	}
	now = now.Add(time.Second)
	if !b.allow() || b.current() != halfOpen {
		t.Fatal("after the cooldown: want one probe allowed, half-open")
	}
	if b.allow() {
		t.Fatal("a second call was allowed while the probe is out")
	}
	b.done(false) // the probe fails: open again, for twice as long
	now = now.Add(time.Second)
	if b.allow() {
		t.Fatal("allowed 1 s after a failed probe; the cooldown should have doubled to 2 s")
	}
	now = now.Add(time.Second)
	if !b.allow() {
		t.Fatal("no probe after the doubled cooldown")
	}
	b.done(true)
	if b.current() != closed || !b.allow() {
		t.Fatalf("after a good probe: state %d, want closed", b.current())
	}
	b.done(true)
	want := []breakerState{open, halfOpen, open, halfOpen, closed}
	if len(states) != len(want) {
		t.Fatalf("state changes = %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("state changes = %v, want %v", states, want)
		}
	}
	// The cooldown is capped.
	for range 10 {
		for b.current() != open {
			fail()
		}
		now = now.Add(time.Hour)
		b.allow()
		b.done(false)
	}
	now = now.Add(4 * time.Second)
	if !b.allow() {
		t.Error("the cooldown grew past its cap of 4 s")
	}
}
