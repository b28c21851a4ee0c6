package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"time"
)

// Verify checks a Paybridge-Signature header against body. It returns nil
// when at least one v1 matches under any of secrets and t is within
// tolerance of now in either direction (tolerance <= 0 disables the time
// check, for replaying stored events).
//
// Every error wraps ErrInvalid. A missing usable secret also wraps
// ErrNoSecret; an authentic header with a stale or future t also wraps
// ErrExpired. The signature is checked before the time so that ErrExpired
// is only ever reported for headers we actually signed, never as a hint to
// a forger.
func Verify(header string, body []byte, secrets [][]byte, now time.Time, tolerance time.Duration) error {
	if !hasSecret(secrets) {
		return errNoSecret
	}
	var buf [4][sha256.Size]byte
	p, err := parseStamped(header, buf[:])
	if err != nil {
		return err
	}
	// Every secret is tried against every v1 without stopping early, so
	// timing reveals neither which secret nor which v1 matched.
	matched := false
	ts := []byte(p.t)
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		want := stampedMAC(s, ts, body)
		for i := range p.v1 {
			if hmac.Equal(want, p.v1[i][:]) {
				matched = true
			}
		}
	}
	if !matched {
		return errMismatch
	}
	if tolerance > 0 && !within(now, p.unix, tolerance) {
		return errExpired
	}
	return nil
}

// within accepts clock skew both ways: a sender whose clock runs ahead is
// as common as a delayed delivery.
func within(now time.Time, unix int64, tolerance time.Duration) bool {
	d := now.Sub(time.Unix(unix, 0))
	return d <= tolerance && d >= -tolerance
}
