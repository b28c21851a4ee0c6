package payment

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Checkout sessions. Some platforms (Openfront) ask the gateway to "create
// a payment" before the customer has chosen how to pay: the customer then
// pays on the PSP's own page, and only that authorizes. A session is a
// Payment with no transaction (StatusOpen); confirming it is an Authorize
// Request with PaymentID set, checked and recorded like any other.

// OpenRequest opens a checkout session.
type OpenRequest struct {
	Platform string
	Handler  string
	Gateway  string
	// Key is the call's natural idempotency key (prefixed with the
	// handler's name): a repeat gets the same session.
	Key      string
	Amount   int64
	Currency string
	Purchase Purchase
}

// Open creates a checkout session for req, or returns the answer of the
// session req.Key already opened. Render gets the session, or a refusal
// (which is not remembered).
func (e *Engine) Open(ctx context.Context, req OpenRequest, render Render) (Answer, error) {
	if e.store == nil {
		return Answer{}, ErrNotReady
	}
	ctx = context.WithoutCancel(ctx)
	unlock := e.keys.lock(req.Key)
	defer unlock()
	rec, err := e.idempotency(ctx, req.Key)
	if err != nil {
		return Answer{}, err
	}
	if rec != nil && rec.Done {
		return rec.Answer, nil
	}
	if refusal := checkRequest(Request{Kind: Authorize, Amount: req.Amount, Currency: req.Currency, SourceToken: "-"}); refusal != nil {
		return render(Verdict{Err: refusal}), nil
	}
	now := e.now()
	p := e.newPayment(Request{
		Platform: req.Platform, Handler: req.Handler, Gateway: req.Gateway,
		Amount: req.Amount, Currency: req.Currency, Purchase: req.Purchase,
	}, now)
	p.Status = StatusOpen
	ans := render(Verdict{Payment: p})
	err = e.store.Update(ctx, func(tx Tx) error {
		if err := tx.PutPayment(p); err != nil {
			return err
		}
		return tx.PutIdempotency(&IdempotencyRecord{Key: req.Key, Done: true, PaymentID: p.ID, Answer: ans, CreatedAt: now})
	})
	if err != nil {
		return Answer{}, err
	}
	e.log.Info("payment operation", zap.String("platform", req.Platform), zap.String("handler", req.Handler),
		zap.String("action", "open"), zap.String("payment_id", p.ID), zap.Int64("amount", p.Amount),
		zap.String("currency", p.Currency), zap.String("outcome", "succeeded"))
	e.observer.Operation(req.Platform, "open", "succeeded")
	return ans, nil
}

// Payment returns the payment with the given id; ErrNotFound when unknown.
func (e *Engine) Payment(ctx context.Context, id string) (*Payment, error) {
	if e.store == nil {
		return nil, ErrNotReady
	}
	return e.load(ctx, id)
}

// loadSession checks that req may authorize the session req.PaymentID and
// completes t from it. A session is authorized once: after a decline it may
// be confirmed again, never while an authorization is live or after a void.
func (e *Engine) loadSession(tx Tx, req Request, t *Transaction) (*Payment, *Error, error) {
	p, err := tx.Payment(req.PaymentID)
	if errors.Is(err, ErrNotFound) {
		return nil, newError(KindNotFound, CodePaymentNotFound, "no payment has this id"), nil
	}
	if err != nil {
		return nil, nil, err
	}
	// A payment its platform authorized itself is not the page's to
	// authorize again, even after a decline the platform has been told of.
	if (req.Gateway != "" && p.Gateway != req.Gateway) || !p.IsSession() {
		return nil, newError(KindNotFound, CodePaymentNotFound, "no payment has this id"), nil
	}
	if auth := p.liveTx(Authorize); auth != nil {
		return p, newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the payment was already confirmed (%s)", auth.State)), nil
	}
	if p.Status != StatusOpen && p.Status != StatusRefused {
		return p, newError(KindInvalidState, CodeInvalidState, fmt.Sprintf("the payment is %s", p.Status)), nil
	}
	p.SourceToken = req.SourceToken
	p.Status = StatusPending
	t.Amount = p.Amount
	t.Session = true
	return p, nil, nil
}
