package payment

import (
	"context"
	"errors"
	"time"
)

// Gateway is a PSP. Implementations must be safe for concurrent use and
// should keep no state of their own that a restart would lose: everything
// an operation needs is in Operation.
type Gateway interface {
	// Execute performs op. A definite refusal is a Result with Outcome
	// Declined, never an error; an error means the outcome is a fault (see
	// Fault) and the same op may be executed again with the same Key.
	Execute(ctx context.Context, op Operation) (Result, error)
	// Status reports the current state of an operation executed before.
	Status(ctx context.Context, op Operation) (Result, error)
	// Vault saves a payment source for later use by a customer.
	Vault(ctx context.Context, req VaultRequest) (VaultResult, error)
}

// Operation is everything a PSP call needs.
type Operation struct {
	Kind      Kind
	PaymentID string
	// Key is the PSP idempotency key: the same key never charges twice.
	Key         string
	SourceToken string
	// Ref is the PSP reference of the transaction acted on (the
	// authorization for capture and void, the capture for refund).
	Ref       string
	Amount    int64
	Currency  string
	CreatedAt time.Time // when the operation was first accepted
	Attempt   int       // 1 for the first attempt
}

// Outcome is what the PSP decided.
type Outcome int

const (
	OutcomeSucceeded Outcome = iota + 1
	OutcomePending
	OutcomeDeclined
)

// Result is a PSP's answer.
type Result struct {
	Outcome Outcome
	Ref     string // PSP reference of this operation
	Code    string // decline code
	Message string
	// AuthRequired: pending on the customer (3-D Secure).
	AuthRequired bool
	// CheckAfter hints when a pending operation is worth asking about again.
	CheckAfter time.Duration
	// Details are safe to show downstream (card brand, last4), never secrets.
	Details map[string]string
}

// VaultRequest asks to save a payment source.
type VaultRequest struct {
	Key           string
	SourceToken   string
	CustomerEmail string
	CreatedAt     time.Time
	Attempt       int
}

// VaultResult names a saved payment source.
type VaultResult struct {
	Declined      bool
	Code, Message string
	CustomerToken string
	SourceToken   string
}

// Fault is a transient failure to reach the PSP.
type Fault struct {
	// Sent is false when the request certainly did not reach the PSP
	// (connection refused); true or unknown means it may have executed.
	Sent bool
	Err  error
}

func (f *Fault) Error() string { return "gateway unreachable: " + f.Err.Error() }
func (f *Fault) Unwrap() error { return f.Err }

// maybeExecuted reports whether err leaves the PSP's outcome unknown.
func maybeExecuted(err error) bool {
	var f *Fault
	if errors.As(err, &f) {
		return f.Sent
	}
	return true // a context deadline mid-call, or anything unexpected
}

// GatewayResolver finds a configured gateway by name at call time, so a
// config reload applies to work already queued.
type GatewayResolver interface {
	Gateway(name string) (Gateway, bool)
}
