package payment_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Verification of a call the platform was told had failed holds the call
// while it asks the PSP (status, then perhaps a void: up to 10 s each). A
// repeat of the call that arrives meanwhile must not wait past its own
// deadline: it is told, in time, that nothing was done and to send it
// again, and it never reaches the PSP.
func TestRepeatDuringVerificationAnswersInTime(t *testing.T) {
	h := newHarness(t)
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_2468", Amount: 700, Policy: slow}
	h.loseAnswers()
	wantRefusal(t, h.do(req), payment.KindUnavailable, payment.CodeGatewayUnavailable)
	h.gw.setExecute(nil)

	asked := make(chan struct{})
	release := make(chan struct{})
	h.gw.setStatus(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		close(asked)
		<-release // a PSP that takes its time
		return h.sbx.Status(ctx, op)
	})
	h.clock.Advance(hReconcile)
	verified := make(chan struct{})
	go func() {
		defer close(verified)
		h.eng.ReconcileOnce(context.Background())
	}()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("verification never asked the PSP")
	}

	calls := len(h.gw.executions(payment.Authorize))
	repeat := make(chan error, 1)
	go func() {
		_, err := tryDo(h.eng, context.Background(), req)
		repeat <- err
	}()
	select {
	case err := <-repeat:
		if !errors.Is(err, payment.ErrCallInProgress) {
			t.Errorf("repeat during verification: %v, want ErrCallInProgress", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the repeat (deadline %v) still waits for verification after 10 s", slow.Deadline)
	}
	if n := len(h.gw.executions(payment.Authorize)); n != calls {
		t.Errorf("the repeat reached the PSP (%d authorize calls, %d before)", n, calls)
	}

	close(release)
	<-verified
	h.gw.setStatus(nil)
	if len(h.ledgerOps("void")) != 1 {
		t.Fatalf("verification did not void the authorization: %+v", h.ledgerEntries())
	}
	// Sent again once verification is done, it gets the call's outcome.
	wantRefusal(t, h.do(req), payment.KindInvalidState, payment.CodeInvalidState)
}

// Two deliveries of one call arriving together still make one PSP call:
// the second waits for the first (within its deadline) and gets its answer.
func TestConcurrentDeliveryWaitsForTheFirst(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	release := make(chan struct{})
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		close(started)
		<-release
		return h.sbx.Execute(ctx, op)
	})
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_4242", Amount: 700,
		Policy: payment.Policy{Deadline: time.Minute}}
	first := goDo(t, h.eng, req)
	<-started
	second := goDo(t, h.eng, req)
	time.Sleep(20 * time.Millisecond) // let the second queue on the call
	close(release)
	a, b := <-first, <-second
	if a.body.Token == "" || a.body.Token != b.body.Token || string(a.Body) != string(b.Body) {
		t.Errorf("the deliveries got different answers:\n%s\n%s", a.Body, b.Body)
	}
	if n := len(h.gw.executions(payment.Authorize)); n != 1 {
		t.Errorf("%d authorize calls at the PSP, want 1", n)
	}
}

// A delivery arriving just after the first, whose PSP then takes the whole
// deadline, gets the first's answer: it waits for the first's commits too,
// not only for the deadline.
func TestRepeatArrivingTogetherGetsTheFirstAnswer(t *testing.T) {
	h := newHarness(t)
	entered := make(chan struct{}, 1)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // a PSP that never answers
		return payment.Result{}, &payment.Fault{Err: ctx.Err()}
	})
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_4242", Amount: 700,
		Policy: payment.Policy{Deadline: 2 * time.Second, Async: true}}
	first := goDo(t, h.eng, req)
	<-entered
	second, err := tryDo(h.eng, context.Background(), req)
	if err != nil {
		t.Fatalf("the delivery right behind the first: %v", err)
	}
	if a := <-first; string(a.Body) != string(second.Body) || a.Status != second.Status {
		t.Errorf("the deliveries got different answers:\n%d %s\n%d %s", a.Status, a.Body, second.Status, second.Body)
	}
}

// A delivery that waited for a first one that was refused (which is not
// remembered) makes its own PSP attempt, within what is left of its own
// deadline (at least an eighth of it), not a whole deadline more.
func TestRepeatBehindARefusedFirstKeepsToItsDeadline(t *testing.T) {
	h := newHarness(t)
	d := 400 * time.Millisecond
	entered := make(chan struct{})
	var calls atomic.Int32
	var repeatEnds time.Time
	repeatArrived := make(chan time.Time, 1)
	h.gw.setExecute(func(ctx context.Context, op payment.Operation) (payment.Result, error) {
		if calls.Add(1) == 1 {
			close(entered)
		} else {
			repeatEnds, _ = ctx.Deadline()
		}
		<-ctx.Done()
		return payment.Result{}, &payment.Fault{Err: ctx.Err()} // never sent: a plain refusal
	})
	req := payment.Request{Kind: payment.Authorize, Key: "a", SourceToken: "tok_visa_4242", Amount: 700,
		Policy: payment.Policy{Deadline: d}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := tryDo(h.eng, context.Background(), req); err != nil {
			t.Error(err)
		}
	}()
	<-entered
	time.Sleep(d / 2)
	repeatArrived <- time.Now()
	r, err := tryDo(h.eng, context.Background(), req)
	<-done
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	wantRefusal(t, r, payment.KindUnavailable, payment.CodeGatewayUnavailable)
	if repeatEnds.IsZero() {
		t.Fatal("the repeat made no PSP attempt of its own")
	}
	if bound := (<-repeatArrived).Add(d + d/4); repeatEnds.After(bound) {
		t.Errorf("the repeat's PSP attempts may run until %v after it arrived; its deadline is %v (+ two eighths)",
			repeatEnds.Sub(bound)+d+d/4, d)
	}
}

// goDo runs req in a goroutine; its result arrives on the channel.
func goDo(t *testing.T, eng *payment.Engine, req payment.Request) <-chan result {
	out := make(chan result, 1)
	go func() {
		r, err := tryDo(eng, context.Background(), req)
		if err != nil {
			t.Error(err)
		}
		out <- r
	}()
	return out
}
