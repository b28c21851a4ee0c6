package payment

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// VaultCall asks to save a payment source for a customer. It never goes
// asynchronous (platforms' token calls cannot), so it has no transaction:
// only its answer is remembered, for replays.
type VaultCall struct {
	Platform, Handler, Gateway string
	Key                        string // natural idempotency key, unique across handlers
	SourceToken                string
	CustomerEmail              string
	Deadline                   time.Duration
}

// VaultRender renders the answer to a vault call: res when err is nil.
type VaultRender func(res VaultResult, err *Error) Answer

// Vault saves a payment source at the PSP. A success is durable (and
// replayed to repeats) before it is answered; refusals are not remembered.
func (e *Engine) Vault(ctx context.Context, c VaultCall, render VaultRender) (Answer, error) {
	if e.store == nil {
		return Answer{}, ErrNotReady
	}
	ctx = context.WithoutCancel(ctx) // a saved source must be remembered, see Do
	unlock, budget, ok := e.keys.lockForCall(c.Key, Policy{Deadline: c.Deadline}.deadline())
	if !ok {
		e.logInProgress(c.Platform, c.Handler, "token")
		return Answer{}, ErrCallInProgress
	}
	defer unlock()
	c.Deadline = budget
	rec, err := e.idempotency(ctx, c.Key)
	if err != nil {
		return Answer{}, err
	}
	if rec != nil && rec.Done {
		e.observer.Operation(c.Platform, "token", "replayed")
		return rec.Answer, nil
	}

	res, xerr := e.vault(ctx, c)
	switch {
	case xerr != nil:
		e.observer.Operation(c.Platform, "token", "failed")
		return render(VaultResult{}, newError(KindUnavailable, CodeGatewayUnavailable, "the payment gateway could not be reached in time")), nil
	case res.Declined:
		code := res.Code
		if code == "" {
			code = "declined"
		}
		e.observer.Operation(c.Platform, "token", "failed")
		return render(VaultResult{}, newError(KindDeclined, code, res.Message)), nil
	}
	e.observer.Operation(c.Platform, "token", "succeeded")
	ans := render(res, nil)
	err = e.store.Update(ctx, func(tx Tx) error {
		return tx.PutIdempotency(&IdempotencyRecord{Key: c.Key, Done: true, Answer: ans, CreatedAt: e.now()})
	})
	return ans, err
}

func (e *Engine) vault(ctx context.Context, c VaultCall) (VaultResult, error) {
	deadline := Policy{Deadline: c.Deadline}.deadline()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadline)
	defer cancel()
	created := e.now()
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		gw, ok := e.gateways.Gateway(c.Gateway) // per attempt: see execute
		var res VaultResult
		var err error
		if ok {
			start := time.Now()
			res, err = gw.Vault(ctx, VaultRequest{
				Key: pspKey(c.Key), SourceToken: c.SourceToken, CustomerEmail: c.CustomerEmail,
				CreatedAt: created, Attempt: attempt,
			})
			e.timed(c.Gateway, "vault", start)
		} else {
			err = &Fault{Err: fmt.Errorf("gateway %q is not configured", c.Gateway)}
		}
		if err == nil {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return VaultResult{}, errors.Join(err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
