package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

func msg(pay, body string) *payment.Message {
	return &payment.Message{Kind: "commercelayer", Target: "cl", PaymentID: pay, Body: []byte(body), CreatedAt: t0}
}

func bodies(ms []payment.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

func TestOutboxQueues(t *testing.T) {
	s, _ := openTemp(t)
	// Queue "b" gets the oldest message; key order would put "a" first.
	enqueue(t, s, msg("b", "b1"))
	enqueue(t, s, msg("a", "a1"), msg("a", "a2"), msg("b", "b2"))
	enqueue(t, s, msg("a", "a3"))

	heads, err := s.Heads(10)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(heads); !slices.Equal(got, []string{"b1", "a1"}) {
		t.Fatalf("heads %v, want [b1 a1]", got)
	}
	if !slices.IsSortedFunc(heads, func(x, y payment.Message) int { return int(x.Seq) - int(y.Seq) }) || heads[0].Seq == 0 {
		t.Fatalf("heads not in Seq order: %+v", heads)
	}
	if !heads[0].CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt not kept: %v", heads[0].CreatedAt)
	}

	// Delivered exposes the next message of the queue.
	if err := s.Delivered(heads[1]); err != nil {
		t.Fatal(err)
	}
	heads, _ = s.Heads(10)
	if got := bodies(heads); !slices.Equal(got, []string{"b1", "a2"}) {
		t.Fatalf("after delivering a1: heads %v, want [b1 a2]", got)
	}

	// Reschedule persists the retry state; the head stays the head.
	b1 := heads[0]
	b1.Attempts, b1.NextAttempt, b1.LastError = 3, t0.Add(time.Hour), "503 from platform"
	if err := s.Reschedule(b1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	heads, _ = s.Heads(10)
	if heads[0].Attempts != 3 || !heads[0].NextAttempt.Equal(t0.Add(time.Hour)) || heads[0].LastError != "503 from platform" || string(heads[0].Body) != "b1" {
		t.Fatalf("rescheduled head: %+v", heads[0])
	}

	// Kill moves it to the dead letters and exposes b2.
	b1 = heads[0]
	b1.Attempts = 4
	if err := s.Kill(b1); err != nil {
		t.Fatal(err)
	}
	heads, _ = s.Heads(10)
	if got := bodies(heads); !slices.Equal(got, []string{"a2", "b2"}) {
		t.Fatalf("after killing b1: heads %v, want [a2 b2]", got)
	}
	dead, err := s.DeadLetters(10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	if d := dead[0]; string(d.Body) != "b1" || !d.Dead || d.Attempts != 4 || d.Seq != b1.Seq {
		t.Errorf("dead letter: %+v", d)
	}
	if err := s.Reschedule(b1, time.Time{}); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("rescheduling a dead message: got %v, want ErrNotFound", err)
	}

	pending, err := s.PendingMessages(10)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(pending); !slices.Equal(got, []string{"a2", "a3", "b2"}) {
		t.Errorf("pending %v, want [a2 a3 b2]", got)
	}
	if pending, _ := s.PendingMessages(2); len(pending) != 2 {
		t.Errorf("PendingMessages(2) returned %d", len(pending))
	}
}

func TestHeadsSkipsBacklog(t *testing.T) {
	s, _ := openTemp(t)
	var ms []*payment.Message
	for i := range 500 {
		ms = append(ms, msg("busy", fmt.Sprint("busy", i)))
	}
	enqueue(t, s, ms...)
	enqueue(t, s, msg("busy\x02x", "other"))
	heads, err := s.Heads(10)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(heads); !slices.Equal(got, []string{"busy0", "other"}) {
		t.Fatalf("heads %v", got)
	}
}

// TestHeadsGoesRound checks that queues whose heads are not due cannot hide
// the queues behind them from a worker that asks for a few at a time.
func TestHeadsGoesRound(t *testing.T) {
	s, _ := openTemp(t)
	for _, q := range []string{"q1", "q2", "q3", "q4", "q5"} {
		enqueue(t, s, msg(q, q))
	}
	seen := map[string]int{}
	for range 5 {
		heads, err := s.Heads(2)
		if err != nil || len(heads) != 2 {
			t.Fatalf("heads %+v, %v", heads, err)
		}
		for _, h := range heads {
			seen[h.PaymentID]++
		}
	}
	for _, q := range []string{"q1", "q2", "q3", "q4", "q5"} {
		if seen[q] != 2 {
			t.Errorf("queue %s returned %d times in 5 calls of 2 over 5 queues, want 2", q, seen[q])
		}
	}
}

func TestEnqueueRejectsSeparators(t *testing.T) {
	s, _ := openTemp(t)
	for _, m := range []*payment.Message{
		{Kind: "a\x00b", Target: "t", PaymentID: "p"},
		{Kind: "k", Target: "t\x01", PaymentID: "p"},
		{Kind: "k", Target: "t", PaymentID: "\x00"},
	} {
		err := s.Update(context.Background(), func(tx payment.Tx) error { return tx.Enqueue(m) })
		if !errors.Is(err, errBadQueue) {
			t.Errorf("%q: got %v, want errBadQueue", m.Queue(), err)
		}
	}
}

func TestEnqueuedSignal(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	signalled := func() bool {
		select {
		case <-s.Enqueued():
			return true
		default:
			return false
		}
	}

	// Before the commit the signal must not be there yet.
	err := s.Update(ctx, func(tx payment.Tx) error {
		if err := tx.Enqueue(msg("p", "x")); err != nil {
			return err
		}
		if signalled() {
			t.Error("signalled before commit")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !signalled() {
		t.Fatal("not signalled after commit")
	}

	boom := errors.New("boom")
	err = s.Update(ctx, func(tx payment.Tx) error {
		if err := tx.Enqueue(msg("p", "y")); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("got %v, want fn's error unchanged", err)
	}
	if signalled() {
		t.Error("signalled for a failed Update")
	}
	if pending, _ := s.PendingMessages(10); len(pending) != 1 {
		t.Errorf("failed Update left %d messages, want 1", len(pending))
	}

	// Many commits, one pending signal: senders never block.
	for range 3 {
		enqueue(t, s, msg("p", "z"))
	}
	if !signalled() || signalled() {
		t.Error("want exactly one pending signal")
	}
	put(t, s, newPayment("no-messages"))
	if signalled() {
		t.Error("signalled for an Update that enqueued nothing")
	}
}
