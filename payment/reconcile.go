package payment

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The reconciler finishes what requests left open: operations the PSP is
// still working on (asked again with the PSP's status call, since PSP
// webhooks are only a fast path), operations the PSP could not be reached
// for (executed again, same idempotency key, until the platform's
// async_timeout), orphans of a crash, and failures told to a platform whose
// PSP outcome is unknown (verified, and undone when they went through).

const (
	reconcileWorkers = 8
	pspCallTimeout   = 10 * time.Second
	maxRecheck       = time.Minute
)

// Kick asks the reconciler to look at open transactions now.
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx is done.
func (e *Engine) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-e.kick:
		}
		next := e.ReconcileOnce(ctx)
		wait := max(min(next.Sub(e.now()), e.interval()), 5*time.Millisecond)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// ReconcileOnce works every open transaction that is due and returns when
// the next one will be.
func (e *Engine) ReconcileOnce(ctx context.Context) time.Time {
	now := e.now()
	next := now.Add(e.interval())
	ids, err := e.store.OpenPayments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("reconciler cannot list open payments", zap.Error(err))
		}
		return next
	}
	sem := make(chan struct{}, reconcileWorkers)
	var wg sync.WaitGroup
	for _, id := range ids {
		p, err := e.load(ctx, id)
		if err != nil {
			continue
		}
		for _, t := range p.Txs {
			if !t.Open() || e.inflight.has(t.ID) {
				continue
			}
			due := t.NextCheck
			if t.State == Processing {
				due = time.Time{} // an orphan: nobody in this process works on it
			}
			if due.After(now) {
				if due.Before(next) {
					next = due
				}
				continue
			}
			if !e.inflight.claim(t.ID) {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(pid, tid string) {
				defer func() { e.inflight.release(tid); <-sem; wg.Done() }()
				e.work(ctx, pid, tid)
			}(p.ID, t.ID)
		}
	}
	wg.Wait()
	return next
}

// ReconcilePayment works every open transaction of one payment now, e.g.
// when the PSP's webhook says something changed.
func (e *Engine) ReconcilePayment(ctx context.Context, paymentID string) error {
	p, err := e.load(ctx, paymentID)
	if err != nil {
		return err
	}
	for _, t := range p.Txs {
		if t.Open() && e.inflight.claim(t.ID) {
			e.work(ctx, p.ID, t.ID)
			e.inflight.release(t.ID)
		}
	}
	return nil
}

// PaymentByToken resolves any token of a payment (transaction token,
// action id, PSP key) to its payment id.
func (e *Engine) PaymentByToken(ctx context.Context, token string) (string, error) {
	var id string
	err := e.store.View(ctx, func(tx Tx) error {
		var err error
		id, err = tx.PaymentIDByToken(token)
		return err
	})
	return id, err
}

func (e *Engine) load(ctx context.Context, id string) (*Payment, error) {
	var p *Payment
	err := e.store.View(ctx, func(tx Tx) error {
		var err error
		p, err = tx.Payment(id)
		return err
	})
	return p, err
}

// step is what one background look at a transaction found out.
type step struct {
	res      *Result // a PSP answer to record
	fault    error   // the PSP could not be reached
	giveUp   string  // a code to fail with
	verified bool    // a verification is over
	executed bool    // it found the operation executed at the PSP
	unknown  bool    // it gave up: the operation may have executed
	voided   bool    // it voided the authorization the PSP had made
	note     string
}

func (e *Engine) work(ctx context.Context, paymentID, txID string) {
	p, err := e.load(ctx, paymentID)
	if err != nil {
		return
	}
	t := p.TxByID(txID)
	if t == nil || !t.Open() {
		return
	}
	if t.Verify && t.IdempotencyKey != "" {
		// No repeat of the platform's call may begin while this decides,
		// and records, whether the PSP's operation stands: under the same
		// PSP key the repeat would be given that operation, even one this
		// is about to void (see checkEarlierAttempts).
		unlock := e.keys.lock(t.IdempotencyKey)
		defer unlock()
		if p, err = e.load(ctx, paymentID); err != nil {
			return
		}
		if t = p.TxByID(txID); t == nil || !t.Open() {
			return
		}
	}
	s := e.look(ctx, p, t)
	err = e.updatePayment(ctx, paymentID, func(tx Tx) error {
		p, err := tx.Payment(paymentID)
		if err != nil {
			return err
		}
		t := p.TxByID(txID)
		if t == nil || !t.Open() {
			return nil
		}
		now := e.now()
		before := len(p.Events)
		if t.State == Processing {
			// An orphan: its first call was in flight when the process
			// died, so the PSP may have done it whatever the later
			// attempts meet.
			t.Uncertain = true
		}
		if s.res != nil || s.fault != nil || s.giveUp != "" {
			t.Attempts++
		}
		switch {
		case t.Verify:
			if s.verified {
				t.Verify = false
				switch {
				case s.executed:
					p.executedAnyway(t, now)
				case s.unknown:
					t.ExecutedAnyway = true // counted, not told: nobody knows
				}
				t.Voided = s.voided
				if s.note != "" {
					t.Message = s.note
				}
			} else {
				t.NextCheck = now.Add(e.backoff(t.Attempts))
			}
		case s.giveUp != "":
			uncertain := t.Uncertain || s.giveUp == CodeGatewayTimeout || (s.fault != nil && maybeExecuted(s.fault))
			e.fail(p, t, s.giveUp, "the payment gateway did not settle the operation in time", uncertain, now)
		case s.fault != nil:
			t.Uncertain = t.Uncertain || (t.State != Pending && maybeExecuted(s.fault))
			t.NextCheck = now.Add(e.backoff(t.Attempts))
			if t.State == Processing {
				p.apply(t, Retrying, now)
			}
		case s.res != nil:
			e.record(p, t, *s.res, now)
			if t.State == Pending {
				t.NextCheck = now.Add(min(t.NextCheck.Sub(now), e.backoff(t.Attempts)))
			}
		}
		if err := e.enqueue(tx, p, t, now); err != nil {
			return err
		}
		if err := e.emit(tx, p, before, now); err != nil {
			return err
		}
		if err := tx.PutPayment(p); err != nil {
			return err
		}
		return e.forgetFailed(tx, t)
	})
	if err != nil && ctx.Err() == nil {
		e.log.Error("reconciler cannot record a result", zap.String("payment_id", paymentID), zap.Error(err))
	}
}

// forgetFailed drops the unfinished idempotency record of a transaction
// that failed without its platform having been answered, so the platform's
// repeat is a new attempt, as for any failure.
func (e *Engine) forgetFailed(tx Tx, t *Transaction) error {
	if t.State != Failed || t.IdempotencyKey == "" {
		return nil
	}
	rec, err := tx.Idempotency(t.IdempotencyKey)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Done || rec.TxID != t.ID {
		return nil
	}
	if t.Command != nil {
		// A command is answered once, by its notification: its repeat must
		// not run it again.
		rec.Done = true
		return tx.PutIdempotency(rec)
	}
	return tx.DeleteIdempotency(t.IdempotencyKey)
}

// look asks the PSP about t, outside any store transaction.
func (e *Engine) look(ctx context.Context, p *Payment, t *Transaction) step {
	now := e.now()
	gw, ok := e.gateways.Gateway(p.Gateway)
	ctx, cancel := context.WithTimeout(ctx, pspCallTimeout)
	defer cancel()
	switch {
	case t.Verify:
		if !ok {
			return step{fault: errors.New("gateway not configured")}
		}
		return e.verify(ctx, gw, p, t, now)
	case t.State == Pending:
		// Asked once more even when overdue: a restart may have slept
		// through the deadline while the PSP settled long ago.
		overdue := now.After(t.CreatedAt.Add(e.maxAge()))
		if !ok {
			return step{fault: errors.New("gateway not configured"), giveUp: giveUpIf(overdue, CodeGatewayTimeout)}
		}
		start := time.Now()
		res, err := gw.Status(ctx, p.operation(t, t.Attempts))
		e.timed(p.Gateway, "status", start)
		if err == nil && res.Outcome != OutcomePending {
			return step{res: &res}
		}
		if overdue {
			return step{fault: err, giveUp: CodeGatewayTimeout}
		}
		if err != nil {
			return step{fault: err}
		}
		return step{res: &res}
	default: // Processing (an orphan) or Retrying
		overdue := !t.GiveUpAt.IsZero() && now.After(t.GiveUpAt)
		if !ok {
			return step{fault: &Fault{Err: errors.New("gateway not configured")}, giveUp: giveUpIf(overdue, CodeGatewayUnavailable)}
		}
		start := time.Now()
		res, err := gw.Execute(ctx, p.operation(t, t.Attempts+1))
		e.timed(p.Gateway, string(t.Kind), start)
		if err != nil {
			return step{fault: err, giveUp: giveUpIf(overdue, CodeGatewayUnavailable)}
		}
		return step{res: &res}
	}
}

func giveUpIf(overdue bool, code string) string {
	if overdue {
		return code
	}
	return ""
}

// verify finds out whether a transaction the platform was told had failed
// went through at the PSP, and voids an authorization that did: otherwise
// the customer's funds stay held for an order that does not exist.
func (e *Engine) verify(ctx context.Context, gw Gateway, p *Payment, t *Transaction, now time.Time) step {
	if now.After(t.CreatedAt.Add(e.maxAge())) {
		e.log.Error("gave up verifying a failed operation at the PSP; check it by hand",
			zap.String("payment_id", p.ID), zap.String("tx_id", t.ID), zap.String("action", string(t.Kind)))
		// Not knowing is not knowing it did not happen: a capture or
		// refund the PSP may have done keeps its amount counted, so the
		// payment's limits still hold until someone has looked.
		unknown := t.Kind == Capture || t.Kind == Refund
		return step{verified: true, unknown: unknown, note: "not verified at the PSP in time; counted as executed until checked by hand"}
	}
	switch took, inFlight := e.superseded(ctx, p, t); {
	case took:
		return step{verified: true}
	case inFlight:
		return step{fault: errors.New("a repeat of this call is in flight under the same PSP key")}
	}
	start := time.Now()
	res, err := gw.Status(ctx, p.operation(t, t.Attempts))
	e.timed(p.Gateway, "status", start)
	if err != nil {
		return step{fault: err}
	}
	switch res.Outcome {
	case OutcomePending:
		return step{fault: errors.New("still pending at the PSP")}
	case OutcomeDeclined:
		return step{verified: true}
	}
	if t.Kind != Authorize {
		e.log.Error("the PSP executed an operation the platform was told had failed; reconcile it by hand",
			zap.String("payment_id", p.ID), zap.String("tx_id", t.ID), zap.String("action", string(t.Kind)),
			zap.Int64("amount", t.Amount), zap.String("currency", p.Currency))
		return step{verified: true, executed: true, note: "executed at the PSP after the platform was told it failed"}
	}
	void := Operation{
		Kind: Void, PaymentID: p.ID, Key: t.PSPKey + "_void", SourceToken: p.SourceToken,
		Ref: res.Ref, Amount: t.Amount, Currency: p.Currency, CreatedAt: t.CreatedAt, Attempt: 1,
	}
	start = time.Now()
	vres, err := gw.Execute(ctx, void)
	e.timed(p.Gateway, string(Void), start)
	if err != nil || vres.Outcome == OutcomePending {
		return step{fault: errors.New("void at the PSP not done yet")}
	}
	if vres.Outcome == OutcomeDeclined {
		// Asking again would get the same refusal: someone has to release
		// the customer's funds at the PSP.
		e.log.Error("the PSP refused to void an authorization the platform was told had failed; release it by hand",
			zap.String("payment_id", p.ID), zap.String("tx_id", t.ID), zap.String("code", vres.Code),
			zap.Int64("amount", t.Amount), zap.String("currency", p.Currency))
		return step{verified: true, note: "authorized at the PSP after the platform was told it failed; the PSP refused to void it (" + vres.Code + "): release it by hand"}
	}
	e.log.Warn("voided an authorization the platform was told had failed",
		zap.String("payment_id", p.ID), zap.String("tx_id", t.ID))
	return step{verified: true, voided: true, note: "authorized at the PSP after the platform was told it failed; voided"}
}

// superseded reports whether a later attempt of the same platform call
// (same PSP key, same amount) took over t's operation at the PSP: then its
// outcome, told to the platform, is the truth, and undoing it would undo a
// payment the platform was told succeeded. A later attempt that failed
// took nothing over; one still in flight (inFlight) may yet, so t waits.
func (e *Engine) superseded(ctx context.Context, p *Payment, t *Transaction) (took, inFlight bool) {
	scan := func(q *Payment) {
		for _, o := range q.Txs {
			if o == t || o.PSPKey != t.PSPKey || o.Amount != t.Amount {
				continue
			}
			switch {
			case o.State == Succeeded || o.State == Pending:
				took = true
			case !o.State.Final():
				inFlight = true
			}
		}
	}
	scan(p)
	// The index leads to the newest payment that used the key: a repeated
	// authorization makes a payment of its own.
	if id, err := e.PaymentByToken(ctx, t.PSPKey); err == nil && id != p.ID {
		if q, err := e.load(ctx, id); err == nil {
			scan(q)
		}
	}
	return took, inFlight && !took
}

// backoff spaces background attempts: from the reconcile interval, doubling,
// up to a minute, so a PSP back from an outage is noticed soon.
func (e *Engine) backoff(attempts int) time.Duration {
	d := e.interval()
	for i := 1; i < attempts && d < maxRecheck; i++ {
		d *= 2
	}
	return min(d, maxRecheck)
}
