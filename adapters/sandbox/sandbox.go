// Package sandbox owns the embedded test PSP, paybridge's default gateway.
//
// The sandbox's outcomes are a pure function of the payment source token,
// the operation's creation time and the attempt number, all of which the
// engine passes in with each call (see payment.Operation). The sandbox
// therefore keeps no state of its own: a new Sandbox, after a restart,
// answers status queries exactly as the one that executed the operation
// would have. The token selects the behaviour, like a PSP's test cards; the
// table (DESIGN.md, "The sandbox PSP") is a public interface:
//
//	tok_decline             every operation declined, code card_declined
//	tok_insufficient_funds  authorization declined, code insufficient_funds
//	tok_async               every operation pending, then succeeded after AsyncDelay
//	tok_async_decline       authorization pending, then declined (card_declined) after AsyncDelay
//	tok_3ds                 authorization pending on the customer (AuthRequired), then succeeded after AsyncDelay
//	tok_capture_fail        authorizes; every capture declined (capture_declined)
//	tok_refund_fail         authorizes and captures; every refund declined (refund_declined)
//	tok_flaky               attempts 1 and 2 fail as a network fault, attempt 3 on succeeds
//	tok_outage              every attempt fails as a network fault until Outage after the operation's creation
//	tok_unavailable         every attempt fails as a network fault, forever
//	tok_expired             authorizes, but the authorization counts as expired: a validation
//	                        declines (authorization_expired), a revalidation re-authorizes under
//	                        a new reference
//	anything else           succeeds synchronously
//
// A validation (payment.Validate, Magento OMS's validate and revalidate)
// has the outcome an authorization with its token would have.
//
// A token behaves as the longest entry that begins it, so tests make unique
// tokens by appending to an entry: tok_async_decline_7f3a behaves as
// tok_async_decline, tok_visa_91c2 as "anything else".
//
// With Config.Ledger set, the sandbox appends one fsynced line per operation
// it really executes, so fault tests (kill -9 included) can prove that no
// operation was charged twice. Like a real PSP, it honours idempotency keys:
// an operation it already executed under a key (the ledger says so, also
// after a restart) is answered again and not executed again. So a double
// charge in the ledger is one payment operation under two keys, which is
// what an engine that lost track of its key would do. ReadLedger parses the
// file.
//
// This package is part of paybridge's core: it must not import Caddy, Badger
// or net/http-serving code.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// The behaviour table's entries: tokens that begin with one of these select
// its behaviour.
const (
	TokDecline           = "tok_decline"
	TokInsufficientFunds = "tok_insufficient_funds"
	TokAsync             = "tok_async"
	TokAsyncDecline      = "tok_async_decline"
	Tok3DS               = "tok_3ds"
	TokCaptureFail       = "tok_capture_fail"
	TokRefundFail        = "tok_refund_fail"
	TokFlaky             = "tok_flaky"
	TokOutage            = "tok_outage"
	TokUnavailable       = "tok_unavailable"
	TokExpired           = "tok_expired"
)

var table = [...]string{
	TokDecline, TokInsufficientFunds, TokAsync, TokAsyncDecline, Tok3DS,
	TokCaptureFail, TokRefundFail, TokFlaky, TokOutage, TokUnavailable, TokExpired,
}

// Tokens lists the behaviour table's entries, for test pages and help texts.
func Tokens() []string { return append([]string(nil), table[:]...) }

// Behaviour returns the table entry token selects: the longest entry that
// begins it, or "" when none does ("anything else": succeeds synchronously).
func Behaviour(token string) string {
	best := ""
	for _, e := range table {
		if len(e) > len(best) && strings.HasPrefix(token, e) {
			best = e
		}
	}
	return best
}

// Decline codes and the messages that go with them.
const (
	CodeCardDeclined      = "card_declined"
	CodeInsufficientFunds = "insufficient_funds"
	CodeCaptureDeclined   = "capture_declined"
	CodeRefundDeclined    = "refund_declined"
	CodeExpired           = "authorization_expired"
	// CodeUnsupported declines an operation kind the sandbox does not know.
	CodeUnsupported = "unsupported_operation"
	// CodeNotExecuted answers a status query, with a ledger, for an
	// operation the sandbox never executed under that key.
	CodeNotExecuted = "no_such_operation"
)

var messages = map[string]string{
	CodeCardDeclined:      "Card declined",
	CodeInsufficientFunds: "Insufficient funds",
	CodeCaptureDeclined:   "Capture declined",
	CodeRefundDeclined:    "Refund declined",
	CodeUnsupported:       "Unsupported operation",
	CodeExpired:           "Authorization expired",
	CodeNotExecuted:       "No operation was executed under this key",
}

var (
	// ErrUnreachable is the Err of every simulated network fault
	// (tok_unavailable, tok_outage, tok_flaky); such faults have Sent false.
	ErrUnreachable = errors.New("sandbox: connection refused (simulated)")
	// ErrClosed is the Err of the fault Execute and Vault return after Close.
	ErrClosed = errors.New("sandbox: closed")
)

// Defaults for the zero values of Config's durations.
const (
	DefaultAsyncDelay = 2 * time.Second
	DefaultOutage     = 10 * time.Second
)

// Config configures a Sandbox. The zero value is usable.
type Config struct {
	// AsyncDelay is how long pending operations stay pending after their
	// creation. Zero means DefaultAsyncDelay (2s).
	AsyncDelay time.Duration
	// Outage is how long tok_outage operations fail after their creation.
	// Zero means DefaultOutage (10s).
	Outage time.Duration
	// Ledger, when set, is a file the sandbox appends one fsynced line to
	// per operation it really executes (see ReadLedger). It is created if
	// missing; its directory must exist.
	Ledger string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sandbox is the test PSP. It implements payment.Gateway and is safe for
// concurrent use.
type Sandbox struct {
	asyncDelay time.Duration
	outage     time.Duration
	now        func() time.Time

	closed atomic.Bool
	mu     sync.Mutex // serializes ledger writes and Close
	ledger *os.File   // nil without a ledger; set once in New
	// executed holds the (operation, key) pairs the ledger records: a
	// repeat answers as before without executing again, as a PSP honours
	// an idempotency key (see record).
	executed *keySet
}

var _ payment.Gateway = (*Sandbox)(nil)

// New returns a Sandbox configured by cfg, opening (creating, appending to)
// the ledger when cfg.Ledger is set.
func New(cfg Config) (*Sandbox, error) {
	if cfg.AsyncDelay < 0 {
		return nil, fmt.Errorf("sandbox: negative async delay %s", cfg.AsyncDelay)
	}
	if cfg.Outage < 0 {
		return nil, fmt.Errorf("sandbox: negative outage %s", cfg.Outage)
	}
	s := &Sandbox{asyncDelay: cfg.AsyncDelay, outage: cfg.Outage, now: cfg.Now}
	if s.asyncDelay == 0 {
		s.asyncDelay = DefaultAsyncDelay
	}
	if s.outage == 0 {
		s.outage = DefaultOutage
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Ledger != "" {
		f, err := os.OpenFile(cfg.Ledger, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("sandbox: opening ledger: %w", err)
		}
		s.ledger = f
		if s.executed, err = ledgerKeys(cfg.Ledger); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the ledger. Afterwards Execute and Vault fail with a fault
// (Sent false, Err ErrClosed); Status, which writes nothing, still answers.
// Closing twice is harmless.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) || s.ledger == nil {
		return nil
	}
	if err := s.ledger.Close(); err != nil {
		return fmt.Errorf("sandbox: closing ledger: %w", err)
	}
	return nil
}

// Execute performs op. Its outcome depends only on op.SourceToken,
// op.CreatedAt, op.Attempt and the clock (see the package documentation).
//
// Asynchronous behaviours always answer Pending from Execute, with
// CheckAfter the time left until op.CreatedAt+AsyncDelay (zero when already
// past); Status then tells how the operation ended.
//
// When the operation really executes (it returns Succeeded or Pending),
// Execute appends its ledger line and syncs the file before returning. A
// context done before Execute starts is a fault with Sent true, as a
// caller giving up on a real PSP could not know whether its request went
// out; once executed and recorded, the answer is returned whatever the
// context's state.
func (s *Sandbox) Execute(ctx context.Context, op payment.Operation) (payment.Result, error) {
	if err := ctx.Err(); err != nil {
		return payment.Result{}, &payment.Fault{Sent: true, Err: err}
	}
	if s.closed.Load() {
		return payment.Result{}, &payment.Fault{Sent: false, Err: ErrClosed}
	}
	now := s.now()
	res, err := s.decide(op, now, false)
	if err != nil {
		return payment.Result{}, err
	}
	if res.Outcome == payment.OutcomeSucceeded || res.Outcome == payment.OutcomePending {
		if err := s.record(now, string(op.Kind), op.Key, op.Amount, op.Currency); err != nil {
			return payment.Result{}, err
		}
	}
	return res, nil
}

// Status reports how op, executed before, stands now, recomputed from the
// same inputs as Execute: asynchronous operations are Pending until
// op.CreatedAt+AsyncDelay and settled afterwards, declines stay declined,
// tok_unavailable and tok_outage fault as Execute does (tok_outage until
// its outage ends), tok_flaky operations have succeeded, and everything
// else has succeeded. Status never writes the ledger, and answers after
// Close too.
//
// With a ledger the sandbox knows what it executed, as a PSP does: an
// operation it never executed under op.Key is declined with
// CodeNotExecuted, so a caller verifying a lost answer learns that nothing
// happened. Without one it cannot tell, and answers as if it had.
func (s *Sandbox) Status(ctx context.Context, op payment.Operation) (payment.Result, error) {
	if err := ctx.Err(); err != nil {
		return payment.Result{}, &payment.Fault{Sent: true, Err: err}
	}
	res, err := s.decide(op, s.now(), true)
	if err != nil || s.executed == nil || res.Outcome == payment.OutcomeDeclined || s.executed.has(string(op.Kind), op.Key) {
		return res, err
	}
	return payment.Result{Outcome: payment.OutcomeDeclined, Code: CodeNotExecuted, Message: messages[CodeNotExecuted]}, nil
}

// Vault saves a payment source. tok_decline sources are declined
// (card_declined); the network faults follow the same rules as Execute,
// with req.CreatedAt and req.Attempt. Otherwise the customer token is
// "cus_" and the first 20 hex digits of the SHA-256 of the lowercased
// e-mail address (of req.Key without one), and the saved source token is
// req.SourceToken + "_saved_" + the first 16 hex digits of the SHA-256 of
// req.Key: deterministic per key, and it keeps the source's behaviour.
// A saved source is recorded in the ledger as a "vault" line.
func (s *Sandbox) Vault(ctx context.Context, req payment.VaultRequest) (payment.VaultResult, error) {
	if err := ctx.Err(); err != nil {
		return payment.VaultResult{}, &payment.Fault{Sent: true, Err: err}
	}
	if s.closed.Load() {
		return payment.VaultResult{}, &payment.Fault{Sent: false, Err: ErrClosed}
	}
	now := s.now()
	b := Behaviour(req.SourceToken)
	if err := s.fault(b, req.CreatedAt, req.Attempt, now, false); err != nil {
		return payment.VaultResult{}, err
	}
	if b == TokDecline {
		return payment.VaultResult{Declined: true, Code: CodeCardDeclined, Message: messages[CodeCardDeclined]}, nil
	}
	customer := strings.ToLower(strings.TrimSpace(req.CustomerEmail))
	if customer == "" {
		customer = req.Key
	}
	res := payment.VaultResult{
		CustomerToken: "cus_" + hashHex(customer, 20),
		SourceToken:   req.SourceToken + "_saved_" + hashHex(req.Key, 16),
	}
	if err := s.record(now, "vault", req.Key, 0, ""); err != nil {
		return payment.VaultResult{}, err
	}
	return res, nil
}

// fault returns the simulated network fault behaviour b causes for an
// operation created at created, on attempt attempt, at now; nil when the
// PSP is reachable. Status (status true) ignores tok_flaky's attempts.
func (s *Sandbox) fault(b string, created time.Time, attempt int, now time.Time, status bool) error {
	switch b {
	case TokUnavailable:
		return &payment.Fault{Sent: false, Err: ErrUnreachable}
	case TokOutage:
		if end := created.Add(s.outage); now.Before(end) {
			return &payment.Fault{Sent: false, Err: fmt.Errorf("%w: outage for another %s", ErrUnreachable, end.Sub(now))}
		}
	case TokFlaky:
		if !status && attempt <= 2 {
			return &payment.Fault{Sent: false, Err: fmt.Errorf("%w: attempt %d", ErrUnreachable, attempt)}
		}
	}
	return nil
}

// decide computes op's result at now, for Execute or (status true) Status.
func (s *Sandbox) decide(op payment.Operation, now time.Time, status bool) (payment.Result, error) {
	b := Behaviour(op.SourceToken)
	if err := s.fault(b, op.CreatedAt, op.Attempt, now, status); err != nil {
		return payment.Result{}, err
	}
	res := payment.Result{
		Outcome: payment.OutcomeSucceeded,
		Ref:     Ref(op.Key),
		Details: map[string]string{"brand": "sandbox", "last4": last4(op.SourceToken, b)},
	}
	decline := func(code string) (payment.Result, error) {
		res.Outcome, res.Code, res.Message = payment.OutcomeDeclined, code, messages[code]
		return res, nil
	}
	// async makes res pending until the delay is over (always, for
	// Execute), then settles it as settled says.
	async := func(settled payment.Outcome, code string, authRequired bool) (payment.Result, error) {
		deadline := op.CreatedAt.Add(s.asyncDelay)
		if !status || now.Before(deadline) {
			res.Outcome, res.AuthRequired = payment.OutcomePending, authRequired
			res.CheckAfter = max(deadline.Sub(now), 0)
			return res, nil
		}
		if settled == payment.OutcomeDeclined {
			return decline(code)
		}
		return res, nil
	}
	switch op.Kind {
	case payment.Authorize, payment.Capture, payment.Void, payment.Refund, payment.Validate, payment.Revalidate:
	default:
		return decline(CodeUnsupported)
	}
	// A validation asks whether the token's authorization holds: it has the
	// authorization's outcome. A revalidation of an authorization that holds
	// keeps its reference; of an expired one, it authorizes anew.
	authLike := op.Kind == payment.Authorize || op.Kind == payment.Validate || op.Kind == payment.Revalidate
	if op.Kind == payment.Revalidate && b != TokExpired && op.Ref != "" {
		res.Ref = op.Ref
	}
	switch b {
	case TokDecline:
		return decline(CodeCardDeclined)
	case TokInsufficientFunds:
		if authLike {
			return decline(CodeInsufficientFunds)
		}
	case TokAsync:
		return async(payment.OutcomeSucceeded, "", false)
	case TokAsyncDecline:
		if authLike {
			return async(payment.OutcomeDeclined, CodeCardDeclined, false)
		}
	case Tok3DS:
		if authLike {
			return async(payment.OutcomeSucceeded, "", true)
		}
	case TokExpired:
		if op.Kind == payment.Validate {
			return decline(CodeExpired)
		}
	case TokCaptureFail:
		if op.Kind == payment.Capture {
			return decline(CodeCaptureDeclined)
		}
	case TokRefundFail:
		if op.Kind == payment.Refund {
			return decline(CodeRefundDeclined)
		}
	}
	return res, nil
}

// Ref is the sandbox's reference for the operation with idempotency key
// key: "sbx_" and the first 24 hex digits of the key's SHA-256, so the same
// key always yields the same reference.
func Ref(key string) string { return "sbx_" + hashHex(key, 24) }

func hashHex(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:n/2])
}

// last4 returns the last four letters or digits of token's behaviour-free
// tail (what follows the table entry b), or "0000" when there are fewer, or
// when they would be the whole token.
func last4(token, b string) string {
	tail := token[len(b):]
	var out [4]byte
	n := 0
	for i := len(tail) - 1; i >= 0 && n < len(out); i-- {
		if c := tail[i]; 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			n++
			out[len(out)-n] = c
		}
	}
	if n < len(out) || len(token) <= len(out) {
		return "0000"
	}
	return string(out[:])
}
