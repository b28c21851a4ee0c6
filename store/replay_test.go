package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// drain empties the Enqueued channel and reports whether it held a signal.
func drain(s *Store) bool {
	select {
	case <-s.Enqueued():
		return true
	default:
		return false
	}
}

func counts(t *testing.T, s *Store) (pending, dead int) {
	t.Helper()
	pending, dead, err := s.OutboxCounts()
	if err != nil {
		t.Fatal(err)
	}
	return pending, dead
}

func TestReplayDeadLetter(t *testing.T) {
	s, _ := openTemp(t)
	enqueue(t, s, msg("p", "first"))
	enqueue(t, s, msg("p", "second"), msg("other", "o1"))
	heads, err := s.Heads(10)
	if err != nil || len(heads) != 2 || string(heads[0].Body) != "first" {
		t.Fatalf("heads %+v, %v", heads, err)
	}
	first := heads[0]
	first.Attempts, first.NextAttempt, first.LastError = 7, t0.Add(time.Hour), "HTTP 500"
	if err := s.Kill(first); err != nil {
		t.Fatal(err)
	}
	if p, d := counts(t, s); p != 2 || d != 1 {
		t.Fatalf("counts after kill: pending %d dead %d, want 2 1", p, d)
	}
	drain(s)

	now := t0.Add(96 * time.Hour)
	m, err := s.Replay(first.Seq, now)
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != first.Seq || string(m.Body) != "first" || m.Kind != first.Kind || m.Target != first.Target || m.PaymentID != "p" {
		t.Errorf("replayed message identity changed: %+v", m)
	}
	if m.Dead || m.Attempts != 0 || !m.NextAttempt.IsZero() || m.LastError != "" || !m.CreatedAt.Equal(now) {
		t.Errorf("replayed message not reset (want live, 0 attempts, due now, created at %v): %+v", now, m)
	}
	if !drain(s) {
		t.Error("Enqueued not signalled after replaying a dead letter")
	}
	if p, d := counts(t, s); p != 3 || d != 0 {
		t.Errorf("counts after replay: pending %d dead %d, want 3 0", p, d)
	}
	if dead, _ := s.DeadLetters(10); len(dead) != 0 {
		t.Errorf("still a dead letter: %+v", dead)
	}

	// It is back at the head of its queue, ahead of what was queued for
	// the same payment after it, and stored as returned.
	heads, err = s.Heads(10)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(heads); !slices.Equal(got, []string{"first", "o1"}) {
		t.Fatalf("heads after replay %v, want [first o1]", got)
	}
	h := heads[0]
	if h.Dead || h.Attempts != 0 || !h.NextAttempt.IsZero() || h.LastError != "" || !h.CreatedAt.Equal(now) {
		t.Errorf("stored replayed message: %+v", h)
	}
	// The worker's usual calls work on it.
	if err := s.Delivered(h); err != nil {
		t.Fatal(err)
	}
	heads, _ = s.Heads(10)
	if got := bodies(heads); !slices.Equal(got, []string{"second", "o1"}) {
		t.Errorf("heads after delivering the replayed message %v, want [second o1]", got)
	}
}

func TestReplayLiveMessageIsDueNow(t *testing.T) {
	s, _ := openTemp(t)
	enqueue(t, s, msg("a", "a1"), msg("b", "b1"), msg("b", "b2"))
	pending, err := s.PendingMessages(10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("pending %+v, %v", pending, err)
	}
	// b2 is not a head: replay finds it anyway.
	var b2 payment.Message
	for _, m := range pending {
		if string(m.Body) == "b2" {
			b2 = m
		}
	}
	b2.Attempts, b2.NextAttempt, b2.LastError = 3, t0.Add(time.Hour), "timeout"
	if err := s.Reschedule(b2, time.Time{}); err != nil {
		t.Fatal(err)
	}
	drain(s)

	m, err := s.Replay(b2.Seq, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "b2" || m.Seq != b2.Seq || m.Dead {
		t.Errorf("replayed %+v, want b2", m)
	}
	if !m.NextAttempt.IsZero() {
		t.Errorf("NextAttempt %v, want zero (due now)", m.NextAttempt)
	}
	// Retry-now keeps the history and the age.
	if m.Attempts != 3 || m.LastError != "timeout" || !m.CreatedAt.Equal(t0) {
		t.Errorf("retry now changed attempts, last error or age: %+v", m)
	}
	if !drain(s) {
		t.Error("Enqueued not signalled after retry now")
	}
	pending, _ = s.PendingMessages(10)
	for _, p := range pending {
		if p.Seq == b2.Seq && !p.NextAttempt.IsZero() {
			t.Errorf("stored NextAttempt %v, want zero", p.NextAttempt)
		}
	}
	if p, d := counts(t, s); p != 3 || d != 0 {
		t.Errorf("counts: pending %d dead %d, want 3 0", p, d)
	}
}

// An operator's "retry now" that comes while an attempt of the message is
// under way must not be undone when that attempt fails and reschedules it.
func TestReplayLiveDuringAttemptStands(t *testing.T) {
	s, _ := openTemp(t)
	enqueue(t, s, msg("a", "a1"))
	heads, err := s.Heads(10)
	if err != nil || len(heads) != 1 {
		t.Fatalf("heads %+v, %v", heads, err)
	}
	m := heads[0]
	m.Attempts, m.NextAttempt, m.LastError = 1, t0.Add(time.Second), "timeout"
	if err := s.Reschedule(m, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// The second attempt begins; the operator asks for the message now;
	// the attempt fails and reschedules it.
	if _, err := s.Replay(m.Seq, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	m.Attempts, m.NextAttempt, m.LastError = 2, t0.Add(time.Hour), "timeout again"
	if err := s.Reschedule(m, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	heads, _ = s.Heads(10)
	if h := heads[0]; !h.NextAttempt.IsZero() || h.Attempts != 2 || h.LastError != "timeout again" {
		t.Fatalf("after the failed attempt: %+v, want due now with 2 attempts and the last error", h)
	}
	// The next attempt, begun while it was due now, fails: its schedule
	// is kept, and so is the one after it.
	m.Attempts, m.NextAttempt = 3, t0.Add(2*time.Hour)
	if err := s.Reschedule(m, time.Time{}); err != nil {
		t.Fatal(err)
	}
	m.Attempts, m.NextAttempt = 4, t0.Add(3*time.Hour)
	if err := s.Reschedule(m, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if heads, _ = s.Heads(10); !heads[0].NextAttempt.Equal(t0.Add(3 * time.Hour)) {
		t.Fatalf("NextAttempt %v, want the attempt's %v", heads[0].NextAttempt, t0.Add(3*time.Hour))
	}
}

func TestReplayUnknown(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.Replay(1, t0); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("empty store: got %v, want ErrNotFound", err)
	}
	enqueue(t, s, msg("p", "x"))
	heads, _ := s.Heads(1)
	if _, err := s.Replay(heads[0].Seq+1, t0); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("unknown seq: got %v, want ErrNotFound", err)
	}
	if err := s.Delivered(heads[0]); err != nil {
		t.Fatal(err)
	}
	drain(s)
	if _, err := s.Replay(heads[0].Seq, t0); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("delivered message: got %v, want ErrNotFound", err)
	}
	if drain(s) {
		t.Error("signalled for a replay that found nothing")
	}
	if p, d := counts(t, s); p != 0 || d != 0 {
		t.Errorf("counts: pending %d dead %d, want 0 0", p, d)
	}
}

// TestReplayRacesKill replays messages while they are being killed: each
// ends up exactly once, live or dead, never both or neither.
func TestReplayRacesKill(t *testing.T) {
	s, _ := openTemp(t)
	const n = 30
	for i := range n {
		enqueue(t, s, msg(fmt.Sprint("q", i), "m"))
	}
	heads, err := s.Heads(n)
	if err != nil || len(heads) != n {
		t.Fatalf("heads %d, %v", len(heads), err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, h := range heads {
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.Attempts = 1
			if err := s.Kill(h); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Replay(h.Seq, t0); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// Whichever runs first, the other finds the message: it is
		// always either queued or dead.
		t.Errorf("unexpected error: %v", err)
	}
	if p, d := counts(t, s); p+d != n {
		t.Errorf("pending %d + dead %d, want %d messages in all", p, d, n)
	}
}
