package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Config configures an Engine.
type Config struct {
	Store    Store
	Gateways GatewayResolver
	Logger   *zap.Logger
	// Settings returns the current timing; it is called whenever timing is
	// needed, so a config reload applies to an engine that keeps running.
	// Nil or zero fields mean the defaults.
	Settings func() Settings
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Observer is told about operations and PSP calls (default: nobody).
	Observer Observer
}

// Settings is the engine's timing.
type Settings struct {
	// ReconcileInterval is the longest the reconciler waits between looks
	// at open transactions (default 2s).
	ReconcileInterval time.Duration
	// MaxAge bounds background work: a PSP that has not settled an
	// operation by then is treated as having failed it (default 72h).
	MaxAge time.Duration
	// Listeners hear about every state change (payment events).
	Listeners []Listener
}

// Notifier renders the message telling a platform how a transaction it was
// answered "pending" for ended. It returns nil when there is nothing to say.
type Notifier func(p *Payment, t *Transaction) []byte

// Engine runs payment operations: it checks the invariants, drives the PSP,
// records every state change durably, and owes each platform a callback for
// what it answered "pending". One Engine serves one store; it is shared by
// every platform handler and survives config reloads.
type Engine struct {
	store     Store
	gateways  GatewayResolver
	log       *zap.Logger
	now       func() time.Time
	settings  func() Settings
	observer  Observer
	notifiers map[string]Notifier

	keys     keyLocks
	payments keyLocks
	inflight inflight
	kick     chan struct{}
}

// New returns an Engine. Register notifiers before serving.
func New(cfg Config) *Engine {
	e := &Engine{
		store:     cfg.Store,
		gateways:  cfg.Gateways,
		log:       cfg.Logger,
		now:       cfg.Now,
		settings:  cfg.Settings,
		observer:  cfg.Observer,
		notifiers: make(map[string]Notifier),
		kick:      make(chan struct{}, 1),
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.observer == nil {
		e.observer = nopObserver{}
	}
	if e.settings == nil {
		e.settings = func() Settings { return Settings{} }
	}
	return e
}

func (e *Engine) interval() time.Duration {
	if d := e.settings().ReconcileInterval; d > 0 {
		return d
	}
	return 2 * time.Second
}

func (e *Engine) maxAge() time.Duration {
	if d := e.settings().MaxAge; d > 0 {
		return d
	}
	return 72 * time.Hour
}

// RegisterNotifier sets how callbacks to platform are rendered.
func (e *Engine) RegisterNotifier(platform string, n Notifier) { e.notifiers[platform] = n }

// updatePayment runs fn in a store transaction while holding paymentID's
// lock. Writes to one payment are serialized here, in process, so concurrent
// captures of one authorization queue up instead of colliding in Badger and
// retrying; Badger's conflict detection stays as the backstop that keeps the
// invariants if anything else writes the payment.
func (e *Engine) updatePayment(ctx context.Context, paymentID string, fn func(Tx) error) error {
	if paymentID != "" {
		unlock := e.payments.lock(paymentID)
		defer unlock()
	}
	return e.store.Update(ctx, fn)
}

// Policy is how a platform handler wants PSP trouble handled.
type Policy struct {
	// Deadline bounds the synchronous PSP call (default 4s).
	Deadline time.Duration
	// Async: when the PSP cannot be reached by the deadline, answer
	// "pending" and keep trying in the background, instead of failing.
	Async bool
	// AsyncTimeout: background attempts give up this long after the
	// operation was accepted (default 15m).
	AsyncTimeout time.Duration
}

func (p Policy) deadline() time.Duration {
	if p.Deadline <= 0 {
		return 4 * time.Second
	}
	return p.Deadline
}

func (p Policy) asyncTimeout() time.Duration {
	if p.AsyncTimeout <= 0 {
		return 15 * time.Minute
	}
	return p.AsyncTimeout
}

// Request is one platform call, already decoded and authenticated.
type Request struct {
	Kind     Kind
	Platform string
	Handler  string
	Gateway  string
	// Key is the call's natural idempotency key; it must already be unique
	// across handlers (prefix it with the handler's name).
	Key string
	// Token: for capture and void, the authorization's transaction token;
	// for refund, the capture's.
	Token string
	// SourceToken: for authorize, the payment source at the PSP.
	SourceToken string
	// PaymentID: for authorize, a checkout session (see Open) to authorize
	// instead of a new payment; its amount and currency are used.
	PaymentID string
	// Amount: authorize, capture and refund amount, in minor units.
	Amount int64
	// Currency: required for authorize; when set on other calls it must
	// match the payment's.
	Currency string
	Purchase Purchase
	Policy   Policy
	// Command, when set, makes the call a platform command (Transaction.
	// Command): every outcome, a refusal by the rules included, is recorded
	// as a transaction, remembered, and notified once.
	Command []byte
}

// Verdict is what the engine made of a request, for the platform to render.
type Verdict struct {
	Payment *Payment     // nil when the request never reached a payment
	Tx      *Transaction // the transaction the request created or found
	Err     *Error       // nil when the operation succeeded or is pending
}

// Render turns an outcome into the platform's answer. It must be a pure
// function of the outcome: the answer is stored and replayed.
type Render func(Verdict) Answer

// Do performs req. A repeat of a call that changed state gets the first
// answer again without a second PSP call; a refused call is not remembered,
// so its repeat is a new attempt. The error is non-nil only when the store
// failed or an earlier delivery held the call past the deadline
// (ErrCallInProgress), and then nothing was acknowledged.
func (e *Engine) Do(ctx context.Context, req Request, render Render) (Answer, error) {
	if e.store == nil {
		return Answer{}, ErrNotReady
	}
	// A caller that hangs up must not cut the work short: once the PSP may
	// have been called, its outcome has to be recorded, or the reconciler
	// would take the transaction for an orphan and run it again.
	ctx = context.WithoutCancel(ctx)
	start := e.now()
	unlock, budget, ok := e.keys.lockForCall(req.Key, req.Policy.deadline())
	if !ok {
		e.logInProgress(req.Platform, req.Handler, string(req.Kind))
		return Answer{}, ErrCallInProgress
	}
	defer unlock()
	req.Policy.Deadline = budget

	ans, out, err := e.do(ctx, req, render)
	if err != nil {
		e.log.Error("payment operation failed in the store",
			zap.String("platform", req.Platform), zap.String("handler", req.Handler),
			zap.String("action", string(req.Kind)), zap.Error(err))
		return Answer{}, err
	}
	e.logOutcome(req, out, start)
	return ans, nil
}

func (e *Engine) do(ctx context.Context, req Request, render Render) (Answer, Verdict, error) {
	rec, lockID, err := e.lookup(ctx, req)
	if err != nil {
		return Answer{}, Verdict{}, err
	}
	if rec != nil && rec.Done {
		return answerDone(rec, req, render, func(id string) (*Payment, error) { return e.load(ctx, id) })
	}
	if rec != nil {
		ans, out, adopted, err := e.adopt(ctx, req, rec, render)
		if err != nil || adopted {
			return ans, out, err
		}
		if req.Kind != Authorize {
			lockID, _ = e.PaymentByToken(ctx, req.Token) // adopt may have made it
		}
	}

	p, t, noop, rerr, err := e.begin(ctx, req, lockID)
	if err != nil {
		return Answer{}, Verdict{}, err
	}
	if rerr != nil || noop != nil {
		out := Verdict{Payment: p, Tx: noop, Err: rerr}
		if noop != nil {
			ans := render(out)
			if req.Command != nil {
				// settleCommand already recorded it, done, in begin's
				// store transaction, with its notification.
				return ans, out, nil
			}
			return ans, out, e.remember(ctx, req, p, noop, ans)
		}
		return render(out), out, nil
	}
	defer e.inflight.release(t.ID)

	res, attempts, xerr := e.execute(ctx, p, t, req.Policy.deadline())
	return e.finish(ctx, req, p.ID, t.ID, res, attempts, xerr, render)
}

// answerDone answers a repeat of rec's finished call: with the first answer,
// or with a refusal when it asks for another amount or currency. The
// payment goes with the refusal, as with the rules' refusals: renderers may
// describe it.
func answerDone(rec *IdempotencyRecord, req Request, render Render, load func(paymentID string) (*Payment, error)) (Answer, Verdict, error) {
	refusal := reusedFor(rec, req)
	if refusal == nil {
		return rec.Answer, Verdict{}, nil
	}
	p, err := load(rec.PaymentID)
	if err != nil {
		return Answer{}, Verdict{}, err
	}
	out := Verdict{Payment: p, Err: refusal}
	return render(out), out, nil
}

// reusedFor refuses a repeat of rec's call that asks for another amount:
// answering it with the first call's outcome would tell the platform that
// an operation of its amount was done.
func reusedFor(rec *IdempotencyRecord, req Request) *Error {
	if refusal := currencyReused(rec.Currency, req.Currency); refusal != nil {
		return refusal
	}
	return keyReused(rec.Amount, req.Amount)
}

// currencyReused refuses a call in currency under a key first used in
// first ("": not known, or the call does not say).
func currencyReused(first, currency string) *Error {
	if first == "" || currency == "" || first == currency {
		return nil
	}
	return newError(KindInvalidRequest, CodeIdempotencyKeyReused, fmt.Sprintf(
		"this idempotency key was first used for a payment in %s; a call in %s needs a key of its own", first, currency))
}

// keyReused refuses a call for amount under a key first used for first
// (zero: no amount to compare).
func keyReused(first, amount int64) *Error {
	if first == 0 || amount == 0 || first == amount {
		return nil
	}
	return newError(KindInvalidRequest, CodeIdempotencyKeyReused, fmt.Sprintf(
		"this idempotency key was first used for an amount of %d; a call for another amount needs a key of its own", first))
}

// checkEarlierAttempts checks t, a new attempt of a platform call, against the
// earlier attempts that hold its PSP key (derived from the call's natural
// key, so that a new attempt after an unknown outcome cannot charge twice):
//   - if the PSP may have acted on one of them (a live transaction), the
//     key still names that operation. A repeat for the same amount and
//     currency gets its outcome from the PSP; one for another is refused,
//     since the PSP would answer it with the first one's outcome and
//     paybridge would book what the PSP never did;
//   - if verification voided the authorization one of them made, the key
//     names a voided authorization, which the PSP would give the repeat:
//     the repeat is refused, and the platform must authorize anew.
//
// An attempt never gets a key of its own: the earlier attempts of a call
// are found by the key, so the chain must not break (an attempt under a
// new key would miss one still being verified and charge again).
func checkEarlierAttempts(tx Tx, p *Payment, t *Transaction) (*Error, error) {
	type attempt struct {
		tx       *Transaction
		currency string
	}
	var earlier []attempt
	collect := func(q *Payment) {
		for _, o := range q.Txs {
			if o != t && o.PSPKey == t.PSPKey {
				earlier = append(earlier, attempt{o, q.Currency})
			}
		}
	}
	collect(p)
	// A repeated authorization is a payment of its own: the index leads to
	// the newest payment that used the key.
	id, err := tx.PaymentIDByToken(t.PSPKey)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	case id != p.ID:
		q, err := tx.Payment(id)
		switch {
		case err == nil:
			collect(q)
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	for _, o := range earlier {
		if o.tx.Voided {
			return newError(KindInvalidState, CodeInvalidState,
				"this call's authorization was made at the PSP after its answer was lost, and voided; authorize again as a new call"), nil
		}
		if !live(o.tx) {
			continue
		}
		if refusal := currencyReused(o.currency, p.Currency); refusal != nil {
			return refusal, nil
		}
		if refusal := keyReused(o.tx.Amount, t.Amount); refusal != nil {
			return refusal, nil
		}
	}
	return nil, nil
}

// lookup reads, from one snapshot, the idempotency record of req and the
// payment its token leads to (for the payment lock). Every snapshot waits
// for the commits in flight, so one read instead of two saves a request
// that wait under load.
func (e *Engine) lookup(ctx context.Context, req Request) (rec *IdempotencyRecord, paymentID string, err error) {
	if req.Kind == Authorize {
		rec, err = e.idempotency(ctx, req.Key)
		return rec, req.PaymentID, err
	}
	err = e.store.View(ctx, func(tx Tx) error {
		r, err := tx.Idempotency(req.Key)
		switch {
		case err == nil:
			rec = r
		case !errors.Is(err, ErrNotFound):
			return err
		}
		// Best effort: an unknown token is refused inside begin's
		// transaction.
		paymentID, _ = tx.PaymentIDByToken(req.Token)
		return nil
	})
	return rec, paymentID, err
}

func (e *Engine) idempotency(ctx context.Context, key string) (*IdempotencyRecord, error) {
	var rec *IdempotencyRecord
	err := e.store.View(ctx, func(tx Tx) error {
		r, err := tx.Idempotency(key)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		rec = r
		return err
	})
	return rec, err
}

// remember stores ans as the answer to req.
func (e *Engine) remember(ctx context.Context, req Request, p *Payment, t *Transaction, ans Answer) error {
	return e.store.Update(ctx, func(tx Tx) error {
		return tx.PutIdempotency(recordOf(req, p, t, true, ans, e.now()))
	})
}

// recordOf is the idempotency record of req's call, which made t on p:
// with the amount and currency it asked for, so a repeat for another is
// refused (reusedFor).
func recordOf(req Request, p *Payment, t *Transaction, done bool, ans Answer, now time.Time) *IdempotencyRecord {
	return &IdempotencyRecord{Key: req.Key, Done: done, PaymentID: p.ID, TxID: t.ID, Answer: ans,
		Amount: req.Amount, Currency: p.Currency, CreatedAt: now}
}

// begin checks req against the payment and records the new transaction,
// in flight, together with an unfinished idempotency record, in one store
// transaction, under the lock of payment lockID (the one req is for, as far
// as lookup could tell). It returns a refusal, or the settled transaction a no-op
// request stands for, or the new transaction (claimed in e.inflight).
func (e *Engine) begin(ctx context.Context, req Request, lockID string) (p *Payment, t *Transaction, noop *Transaction, refusal *Error, err error) {
	if refusal := checkRequest(req); refusal != nil {
		return nil, nil, nil, refusal, nil
	}
	now := e.now()
	t = &Transaction{
		ID:             newID("tx_"),
		Kind:           req.Kind,
		Token:          newID("pbt_"),
		Amount:         req.Amount,
		State:          Processing,
		PSPKey:         pspKey(req.Key),
		IdempotencyKey: req.Key,
		Command:        req.Command,
		Notify:         req.Command != nil,
		CreatedAt:      now,
		UpdatedAt:      now,
		GiveUpAt:       now.Add(req.Policy.asyncTimeout()),
	}
	// Claimed before it is written, so the reconciler never mistakes it for
	// an orphan in between.
	e.inflight.claim(t.ID)
	fresh := *t
	settled := false
	err = e.updatePayment(ctx, lockID, func(tx Tx) error {
		// A conflict runs this again: from the transaction as it was,
		// not as a refused run left it.
		*t = fresh
		p, noop, refusal, settled = nil, nil, nil, false
		var ferr error
		switch {
		case req.Kind == Authorize && req.PaymentID != "":
			p, refusal, ferr = e.loadSession(tx, req, t)
		case req.Kind == Authorize:
			p = e.newPayment(req, now)
		default:
			p, noop, refusal, ferr = e.loadFor(tx, req, t)
			if ferr == nil && p != nil && noop == nil {
				if done := p.doneUnder(req.Kind, req.Key, req.Amount); done != nil {
					noop, refusal = done, nil
				}
			}
		}
		if ferr == nil && refusal == nil && noop == nil {
			if refusal, ferr = checkEarlierAttempts(tx, p, t); refusal != nil {
				// Answered to the caller, not settled as a command of
				// its own: that would put a record over the key's
				// first call.
				return ferr
			}
		}
		if ferr != nil {
			return ferr
		}
		if (refusal != nil || noop != nil) && req.Command != nil && p != nil && p.Handler == req.Handler {
			settled = true
			return e.settleCommand(tx, req, p, t, noop, refusal, now)
		}
		if refusal != nil || noop != nil {
			return nil
		}
		p.Txs = append(p.Txs, t)
		p.UpdatedAt = now
		if err := tx.PutPayment(p); err != nil {
			return err
		}
		return tx.PutIdempotency(recordOf(req, p, t, false, Answer{}, now))
	})
	if err != nil || refusal != nil || noop != nil {
		e.inflight.release(t.ID)
	}
	if err == nil && settled {
		noop = t // the command's own transaction, settled and notified
	}
	return p, t, noop, refusal, err
}

// settleCommand records a command the rules refused, or one that finds its
// work already done (a cancel of a voided payment), as a settled
// transaction of its own, and queues its notification in the same store
// transaction: a command gets exactly one answer, whatever happened.
func (e *Engine) settleCommand(tx Tx, req Request, p *Payment, t, done *Transaction, refusal *Error, now time.Time) error {
	if refusal != nil {
		t.State, t.Code, t.Message = Failed, refusal.Code, refusal.Message
	} else {
		t.State, t.PSPRef, t.Amount = Succeeded, done.PSPRef, 0
	}
	t.UpdatedAt = now
	p.Txs = append(p.Txs, t)
	p.UpdatedAt = now
	if err := e.enqueue(tx, p, t, now); err != nil {
		return err
	}
	if err := tx.PutPayment(p); err != nil {
		return err
	}
	return tx.PutIdempotency(recordOf(req, p, t, true, Answer{}, now))
}

// checkRequest refuses what no payment state could make valid. Platforms
// decode and check their own fields; the engine checks again, because a
// capture of 0 or a refund of -100 would corrupt totals whoever sent it.
func checkRequest(req Request) *Error {
	switch req.Kind {
	case Authorize, Capture, Refund:
		if req.Kind == Authorize && req.PaymentID != "" {
			break // the session's amount, checked when it was opened
		}
		if req.Amount <= 0 {
			return newError(KindInvalidAmount, CodeInvalidAmount, "the amount must be a positive number of minor units")
		}
	case Void:
	case Validate, Revalidate:
		if req.Amount < 0 {
			return newError(KindInvalidAmount, CodeInvalidAmount, "the amount must not be negative")
		}
	default:
		return newError(KindInvalidRequest, CodeInvalidRequest, fmt.Sprintf("unknown operation %q", req.Kind))
	}
	if (req.Kind == Authorize && req.PaymentID == "") || req.Currency != "" {
		if _, known := CurrencyExponent(req.Currency); !known {
			return newError(KindInvalidAmount, CodeInvalidAmount, "the currency must be an upper-case ISO 4217 code")
		}
	}
	if req.Kind == Authorize && req.SourceToken == "" {
		return newError(KindInvalidRequest, CodeInvalidRequest, "a payment source token is required")
	}
	return nil
}

func (e *Engine) newPayment(req Request, now time.Time) *Payment {
	return &Payment{
		ID:          newID("pay_"),
		Platform:    req.Platform,
		Handler:     req.Handler,
		Gateway:     req.Gateway,
		Purchase:    req.Purchase,
		Currency:    req.Currency,
		Amount:      req.Amount,
		SourceToken: req.SourceToken,
		Status:      StatusPending,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
}

// loadFor finds the payment req.Token belongs to and checks req against it,
// completing t (amount, parent) when it passes.
func (e *Engine) loadFor(tx Tx, req Request, t *Transaction) (*Payment, *Transaction, *Error, error) {
	id, err := tx.PaymentIDByToken(req.Token)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, newError(KindNotFound, CodePaymentNotFound, "no payment has this transaction token"), nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := tx.Payment(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, newError(KindNotFound, CodePaymentNotFound, "no payment has this transaction token"), nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	target := p.Tx(req.Token)
	// A handler serves one platform account: another account's tokens are
	// not its to act on (and its callbacks would go to the other account).
	if target == nil || p.Handler != req.Handler {
		return p, nil, newError(KindNotFound, CodePaymentNotFound, "no payment has this transaction token"), nil
	}
	if req.Currency != "" && req.Currency != p.Currency {
		return p, nil, newError(KindInvalidAmount, CodeInvalidAmount,
			fmt.Sprintf("currency %s does not match the payment's %s", req.Currency, p.Currency)), nil
	}
	t.Parent = target.Token
	var refusal *Error
	switch req.Kind {
	case Capture:
		refusal = p.checkCapture(target, req.Amount)
	case Refund:
		refusal = p.checkRefund(target, req.Amount)
	case Validate, Revalidate:
		refusal = p.checkValidate(target, req.Kind)
	case Void:
		var done *Transaction
		done, refusal = p.checkVoid(target)
		if done != nil {
			return p, done, nil, nil
		}
		t.Amount = p.Authorized
	}
	return p, nil, refusal, nil
}

// operation builds the PSP call for t, a transaction of p.
func (p *Payment) operation(t *Transaction, attempt int) Operation {
	op := Operation{
		Kind:        t.Kind,
		PaymentID:   p.ID,
		Key:         t.PSPKey,
		SourceToken: p.SourceToken,
		Amount:      t.Amount,
		Currency:    p.Currency,
		CreatedAt:   t.CreatedAt,
		Attempt:     attempt,
	}
	if t.Parent != "" {
		if parent := p.Tx(t.Parent); parent != nil {
			op.Ref = parent.PSPRef
		}
	}
	return op
}

// execute calls the PSP until it answers or the deadline passes, retrying
// transient faults with the same idempotency key. The client's going away
// does not cut it short: the outcome must be recorded either way.
//
// When it gives up, the error says the operation may have executed if any
// attempt may have reached the PSP, not only the last: a first attempt
// whose answer was lost followed by refused connections is still an
// operation the PSP may have done.
func (e *Engine) execute(ctx context.Context, p *Payment, t *Transaction, deadline time.Duration) (Result, int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadline)
	defer cancel()
	attempt := t.Attempts
	backoff := 20 * time.Millisecond
	reached := 0 // the last attempt that may have reached the PSP
	giveUp := func(err error) (Result, int, error) {
		if reached > 0 && !maybeExecuted(err) {
			err = &Fault{Sent: true, Err: fmt.Errorf("attempt %d may have reached the PSP; the last one failed: %w", reached, err)}
		}
		return Result{}, attempt, err
	}
	for {
		attempt++
		// Resolved on every attempt: a config reload replaces (and closes)
		// the gateway a request started with.
		gw, ok := e.gateways.Gateway(p.Gateway)
		var res Result
		var err error
		if ok {
			start := time.Now()
			res, err = gw.Execute(ctx, p.operation(t, attempt))
			e.timed(p.Gateway, string(t.Kind), start)
		} else {
			err = &Fault{Err: fmt.Errorf("gateway %q is not configured", p.Gateway)}
		}
		if err == nil {
			return res, attempt, nil
		}
		if maybeExecuted(err) {
			reached = attempt
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return giveUp(err)
		case <-timer.C:
		}
		if ctx.Err() != nil {
			// The timer and the deadline fired together: calling now would
			// only report a spurious "may have executed".
			return giveUp(err)
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// finish records the PSP's answer for the request's transaction and
// renders the platform's answer, storing it (for a state change) in the same
// store transaction, so what was acknowledged is what is durable.
func (e *Engine) finish(ctx context.Context, req Request, paymentID, txID string, res Result, attempts int, xerr error, render Render) (Answer, Verdict, error) {
	var ans Answer
	var out Verdict
	err := e.updatePayment(ctx, paymentID, func(tx Tx) error {
		p, err := tx.Payment(paymentID)
		if err != nil {
			return err
		}
		t := p.TxByID(txID)
		if t == nil {
			return fmt.Errorf("payment: transaction %s vanished from %s", txID, paymentID)
		}
		now := e.now()
		before := len(p.Events)
		t.Attempts = attempts
		switch {
		case xerr == nil:
			e.record(p, t, res, now)
			if t.State == Pending {
				t.ActionID = newID("pba_")
				t.Notify = true
			}
		case req.Policy.Async:
			t.ActionID = newID("pba_")
			t.Notify = true
			t.Uncertain = t.Uncertain || maybeExecuted(xerr)
			t.NextCheck = now.Add(e.interval())
			p.apply(t, Retrying, now)
		default:
			e.fail(p, t, CodeGatewayUnavailable, "the payment gateway could not be reached in time", maybeExecuted(xerr), now)
		}
		out = Verdict{Payment: p, Tx: t, Err: txError(t)}
		ans = render(out)
		if err := e.enqueue(tx, p, t, now); err != nil {
			return err
		}
		if err := e.emit(tx, p, before, now); err != nil {
			return err
		}
		if err := tx.PutPayment(p); err != nil {
			return err
		}
		if t.State == Failed && t.Command == nil {
			return tx.DeleteIdempotency(req.Key)
		}
		return tx.PutIdempotency(recordOf(req, p, t, true, ans, now))
	})
	if err == nil && out.Tx != nil && out.Tx.Open() {
		e.Kick()
	}
	return ans, out, err
}

// record applies a PSP result to t.
func (e *Engine) record(p *Payment, t *Transaction, res Result, now time.Time) {
	if res.Ref != "" {
		t.PSPRef = res.Ref
	}
	if len(res.Details) > 0 {
		t.Details = res.Details
	}
	t.AuthRequired = res.AuthRequired
	switch res.Outcome {
	case OutcomeSucceeded:
		t.Code, t.Message = "", res.Message
		t.Verify = false
		p.apply(t, Succeeded, now)
		p.reauthorized(t)
	case OutcomeDeclined:
		t.Code, t.Message = res.Code, res.Message
		if t.Code == "" {
			t.Code = "declined"
		}
		t.Verify = false
		p.apply(t, Failed, now)
	default:
		wait := res.CheckAfter
		if wait <= 0 || wait > e.interval() {
			wait = e.interval()
		}
		t.NextCheck = now.Add(wait)
		p.apply(t, Pending, now)
	}
}

// fail ends t as failed with code. verify says the PSP may have executed it
// anyway, which the reconciler must find out and undo.
func (e *Engine) fail(p *Payment, t *Transaction, code, msg string, verify bool, now time.Time) {
	if t.State.Final() {
		return
	}
	t.Code, t.Message = code, msg
	t.Verify = verify
	if verify {
		t.NextCheck = now.Add(e.interval())
	}
	p.apply(t, Failed, now)
}

// txError is the refusal a failed transaction stands for, or nil.
func txError(t *Transaction) *Error {
	if t.State != Failed {
		return nil
	}
	kind := KindDeclined
	if t.Code == CodeGatewayUnavailable || t.Code == CodeGatewayTimeout {
		kind = KindUnavailable
	}
	return newError(kind, t.Code, t.Message)
}

// enqueue queues the platform's callback when t, answered "pending", has
// settled. It runs in the store transaction that settles t.
func (e *Engine) enqueue(tx Tx, p *Payment, t *Transaction, now time.Time) error {
	if !t.Notify || !t.State.Final() {
		return nil
	}
	n := e.notifiers[p.Platform]
	if n == nil {
		return nil
	}
	body := n(p, t)
	if body == nil {
		return nil
	}
	t.Notify = false
	return tx.Enqueue(&Message{Kind: p.Platform, Target: p.Handler, PaymentID: p.ID, Body: body, CreatedAt: now})
}

// logInProgress notes a delivery sent back with ErrCallInProgress.
func (e *Engine) logInProgress(platform, handler, action string) {
	e.log.Warn("a delivery of a call waited out its deadline for an earlier one; it was asked to send it again",
		zap.String("platform", platform), zap.String("handler", handler), zap.String("action", action))
}

func (e *Engine) logOutcome(req Request, out Verdict, start time.Time) {
	fields := []zap.Field{
		zap.String("platform", req.Platform),
		zap.String("handler", req.Handler),
		zap.String("action", string(req.Kind)),
		zap.Duration("duration", e.now().Sub(start)),
	}
	if out.Payment != nil {
		fields = append(fields, zap.String("payment_id", out.Payment.ID), zap.String("currency", out.Payment.Currency))
	}
	outcome := ""
	switch {
	case out.Tx == nil && out.Err == nil:
		outcome = "replayed"
	case out.Err != nil && out.Tx != nil && out.Tx.State == Failed:
		outcome = "failed" // the PSP said no, or could not be reached
		fields = append(fields, zap.String("code", out.Err.Code))
	case out.Err != nil:
		outcome = "refused" // paybridge's own rules said no
		fields = append(fields, zap.String("code", out.Err.Code))
	case out.Tx.State == Succeeded:
		outcome = "succeeded"
	default:
		outcome = "pending"
	}
	fields = append(fields, zap.String("outcome", outcome))
	e.observer.Operation(req.Platform, string(req.Kind), outcome)
	if out.Tx != nil {
		fields = append(fields, zap.Int64("amount", out.Tx.Amount))
	}
	e.log.Info("payment operation", fields...)
}
