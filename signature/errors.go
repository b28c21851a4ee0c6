package signature

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error Verify returns, so callers that only
// need a yes/no answer can test for it alone.
var ErrInvalid = errors.New("signature: invalid")

// ErrExpired marks a header whose signature matched but whose timestamp is
// outside the tolerance: usually a replay or a skewed clock, which an
// operator wants to tell apart from a forged request.
var ErrExpired = errors.New("signature: timestamp outside tolerance")

// ErrNoSecret marks a verification attempted without a usable secret: a
// configuration mistake (typically an unset environment variable) rather
// than a bad request.
var ErrNoSecret = errors.New("signature: no secret configured")

// The reasons are fixed strings on purpose: echoing any part of the header
// could put a signature into logs.
var (
	errEmptyHeader      = fmt.Errorf("%w: empty header", ErrInvalid)
	errMalformedItem    = fmt.Errorf("%w: malformed header item", ErrInvalid)
	errMissingTimestamp = fmt.Errorf("%w: missing t", ErrInvalid)
	errDuplicateStamp   = fmt.Errorf("%w: more than one t", ErrInvalid)
	errBadTimestamp     = fmt.Errorf("%w: bad t", ErrInvalid)
	errMissingV1        = fmt.Errorf("%w: no v1", ErrInvalid)
	errBadV1            = fmt.Errorf("%w: v1 is not a hex SHA-256 digest", ErrInvalid)
	errMismatch         = fmt.Errorf("%w: no v1 matches", ErrInvalid)
	errExpired          = alsoInvalid{ErrExpired}
	errNoSecret         = alsoInvalid{ErrNoSecret}
)

// alsoInvalid lets a sentinel with its own message still satisfy
// errors.Is(err, ErrInvalid), without a doubled "signature: invalid:
// signature: …" message.
type alsoInvalid struct{ cause error }

func (e alsoInvalid) Error() string   { return e.cause.Error() }
func (e alsoInvalid) Unwrap() []error { return []error{ErrInvalid, e.cause} }
