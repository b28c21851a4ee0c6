package payment

import (
	"fmt"
	"math"
	"time"
)

// The invariants every operation obeys. They are checked against the
// payment as read inside the store transaction that also records the new
// transaction, and amounts of transactions still in flight count as
// reserved, so concurrent requests cannot together exceed a balance.

// live reports whether t holds (or may yet hold) its amount. A failure
// whose PSP outcome is still being verified may yet hold it, and one the
// PSP turned out to have executed does: releasing either would let a
// retried capture or refund (Openfront's carry no key of their own) take
// the balance again, and the PSP move more than was authorized or captured.
func live(t *Transaction) bool { return t.State != Failed || t.Verify || t.ExecutedAnyway }

// capturable is what may still be captured: the authorized amount less
// every capture that succeeded or is in flight. Of an authorization made
// elsewhere whose amount no command stated, paybridge sets no bound: the
// PSP refuses a capture beyond the authorization, and that refusal is the
// answer.
func (p *Payment) capturable() int64 {
	if p.authorizedElsewhere() && p.Authorized == 0 {
		return math.MaxInt64
	}
	left := p.Authorized
	for _, t := range p.Txs {
		if t.Kind == Capture && live(t) {
			left -= t.Amount
		}
	}
	return left
}

// Capturable is what may still be captured, in-flight captures reserved.
func (p *Payment) Capturable() int64 { return p.capturable() }

// Refundable is what may still be refunded of capture c, in-flight refunds
// reserved.
func (p *Payment) Refundable(c *Transaction) int64 { return p.refundable(c) }

// refundable is what may still be refunded of capture c.
func (p *Payment) refundable(c *Transaction) int64 {
	left := c.Amount
	for _, t := range p.Txs {
		if t.Kind == Refund && t.Parent == c.Token && live(t) {
			left -= t.Amount
		}
	}
	return left
}

func (p *Payment) liveTx(kind Kind) *Transaction {
	for _, t := range p.Txs {
		if t.Kind == kind && live(t) {
			return t
		}
	}
	return nil
}

// checkCapture validates capturing amount against the authorization target.
func (p *Payment) checkCapture(target *Transaction, amount int64) *Error {
	if target.Kind != Authorize {
		return newError(KindInvalidState, CodeInvalidState, "capture needs an authorization token")
	}
	if p.liveTx(Void) != nil {
		return newError(KindInvalidState, CodeInvalidState, "the authorization was voided")
	}
	if target.State != Succeeded {
		return newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the authorization is %s", target.State))
	}
	if left := p.capturable(); amount > left {
		return newError(KindExceedsBalance, CodeExceedsBalance,
			fmt.Sprintf("capture of %d exceeds the %d %s left to capture", amount, left, p.Currency))
	}
	return nil
}

// checkVoid validates voiding the authorization target. A void of a payment
// already voided is not an error: it returns that void, so the platform
// sees the state it asked for.
func (p *Payment) checkVoid(target *Transaction) (done *Transaction, err *Error) {
	if target.Kind != Authorize {
		return nil, newError(KindInvalidState, CodeInvalidState, "void needs an authorization token")
	}
	if v := p.liveTx(Void); v != nil {
		if v.State == Succeeded {
			return v, nil
		}
		return nil, newError(KindInvalidState, CodeInvalidState, "a void is already in progress")
	}
	if p.liveTx(Capture) != nil {
		return nil, newError(KindInvalidState, CodeInvalidState, "the authorization was captured; refund it instead")
	}
	if target.State != Succeeded {
		return nil, newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the authorization is %s", target.State))
	}
	return nil, nil
}

// checkValidate validates asking whether the authorization target holds.
// A revalidation may re-authorize at the PSP: two at once would make two
// new authorizations, and the payment could keep only one.
func (p *Payment) checkValidate(target *Transaction, kind Kind) *Error {
	if target.Kind != Authorize {
		return newError(KindInvalidState, CodeInvalidState, "validation needs an authorization")
	}
	if kind == Revalidate {
		for _, t := range p.Txs {
			if t.Kind == Revalidate && t.Parent == target.Token && (!t.State.Final() || t.Verify) {
				return newError(KindInvalidState, CodeInvalidState, "a revalidation of this authorization is in progress")
			}
		}
	}
	if p.liveTx(Void) != nil {
		return newError(KindInvalidState, CodeInvalidState, "the authorization was voided")
	}
	if target.State != Succeeded {
		return newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the authorization is %s", target.State))
	}
	return nil
}

// checkRefund validates refunding amount of the capture target.
func (p *Payment) checkRefund(target *Transaction, amount int64) *Error {
	if target.Kind != Capture {
		return newError(KindInvalidState, CodeInvalidState, "refund needs a capture token: nothing was captured")
	}
	if target.State != Succeeded {
		return newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the capture is %s", target.State))
	}
	if left := p.refundable(target); amount > left {
		return newError(KindExceedsBalance, CodeExceedsBalance,
			fmt.Sprintf("refund of %d exceeds the %d %s left to refund", amount, left, p.Currency))
	}
	return nil
}

// doneUnder returns the succeeded capture or refund of amount that a call
// with key made, if any. Its record is gone only when the platform was told
// the call failed and verification then found the PSP had done it: the
// call's repeat is answered with what was done, not refused for the
// balance that transaction took.
func (p *Payment) doneUnder(kind Kind, key string, amount int64) *Transaction {
	if kind != Capture && kind != Refund {
		return nil
	}
	for _, t := range p.Txs {
		if t.Kind == kind && t.IdempotencyKey == key && t.Amount == amount && t.State == Succeeded {
			return t
		}
	}
	return nil
}

// executedAnyway records that the PSP did t, a capture, refund or void,
// after the platform was told it failed: the one move out of a final state,
// since the PSP's fact outranks what the platform was told. The payment's
// totals and status follow, and listeners hear of it like of any other.
func (p *Payment) executedAnyway(t *Transaction, at time.Time) {
	t.ExecutedAnyway = true
	if t.State == Failed {
		t.Code = ""
		p.move(t, Succeeded, at)
	}
}

// apply moves t (a transaction of p) to state and updates p's totals, status
// and events. Moving a transaction to the state it is in is a no-op, and a
// final state is never left: a late PSP answer cannot undo a settled fact.
func (p *Payment) apply(t *Transaction, state TxState, at time.Time) {
	if t.State == state || t.State.Final() {
		return
	}
	p.move(t, state, at)
}

// move is apply without its guard.
func (p *Payment) move(t *Transaction, state TxState, at time.Time) {
	t.State = state
	t.UpdatedAt = at
	p.UpdatedAt = at
	switch {
	case state == Succeeded && t.Kind == Authorize:
		p.Authorized = t.Amount
		p.Status = StatusAuthorized
	case state == Failed && t.Kind == Authorize:
		p.Status = StatusRefused
	case state == Succeeded && t.Kind == Capture:
		p.Captured += t.Amount
		p.Status = StatusCaptured
	case state == Succeeded && t.Kind == Void:
		p.Status = StatusCancelled
	case state == Succeeded && t.Kind == Refund:
		p.Refunded += t.Amount
	}
	if typ := eventFor(t); typ != "" {
		// Retrying and Pending both read as "started": one event per
		// transaction and type, even with other events in between.
		for _, ev := range p.Events {
			if ev.TxID == t.ID && ev.Type == typ {
				return
			}
		}
		p.Events = append(p.Events, Event{
			ID:         newID("evt_"),
			Type:       typ,
			Sequence:   int64(len(p.Events) + 1),
			TxID:       t.ID,
			Amount:     t.Amount,
			OccurredAt: at,
		})
	}
}
