package payment

import "errors"

// ErrorKind classifies a refused request; each platform maps it to its own
// status code and wording, while Code stays stable for clients.
type ErrorKind int

const (
	KindInvalidRequest ErrorKind = iota + 1 // malformed: 400
	KindInvalidAmount                       // bad currency or amount: 400
	KindNotFound                            // token resolves to no payment: 404
	KindInvalidState                        // wrong state for the operation: 409
	KindExceedsBalance                      // over what may be captured or refunded: 422
	KindDeclined                            // the PSP said no: 422
	KindUnavailable                         // the PSP could not be reached in time: 502
)

// Error is a request the engine refused, with a stable code.
type Error struct {
	Kind    ErrorKind
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(kind ErrorKind, code, msg string) *Error {
	return &Error{Kind: kind, Code: code, Message: msg}
}

// Stable error codes shared by every platform.
const (
	CodeInvalidRequest     = "invalid_request"
	CodeInvalidAmount      = "invalid_amount"
	CodePaymentNotFound    = "payment_not_found"
	CodeInvalidState       = "invalid_state"
	CodeExceedsBalance     = "amount_exceeds_balance"
	CodeGatewayUnavailable = "gateway_unavailable"
	CodeGatewayTimeout     = "gateway_timeout"
	// CodeIdempotencyKeyReused: a repeat of a call asked for another amount.
	CodeIdempotencyKeyReused = "idempotency_key_reused"
)

// ErrNotFound is returned by a Store for a missing record.
var ErrNotFound = errors.New("payment: not found")

// ErrNotReady is returned when the engine has no store yet (Caddy starts
// apps in no fixed order).
var ErrNotReady = errors.New("payment: engine not started")

// ErrCallInProgress is returned when an earlier delivery of the same call
// (or the check of its outcome at the PSP) still holds the call for longer
// than the caller's deadline. Nothing was done for this delivery: sending
// it again later is safe and gets the call's outcome.
var ErrCallInProgress = errors.New("payment: an earlier delivery of this call is still in progress")
