package delivery

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// backoff is the delay before attempt n+1 after n failures: MinBackoff
// doubling per failure, capped at MaxBackoff, with "equal jitter" (half
// fixed, half random). The fixed half keeps a minimum spacing; the random
// half spreads the retries of everything that failed during one outage, so
// a listener coming back is not hit by all of them at once.
func (s *settings) backoff(failures int) time.Duration {
	d := s.minBackoff
	for i := 1; i < failures && d < s.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.maxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// nextAttempt schedules m's next try after a failure at now.
//
// Retry-After wins over the backoff when longer, even beyond MaxBackoff:
// a listener that says "come back in an hour" means it, and hammering it
// every ten minutes only earns more 429s. It is not trusted beyond the
// message's MaxAge deadline, though: the attempt is then made at the
// deadline, so the message gets one last chance before it is dead-lettered
// instead of dying unsent on the listener's say-so. The plain backoff is
// clipped the same way.
func (s *settings) nextAttempt(m payment.Message, now time.Time, retryAfter time.Duration) time.Time {
	next := now.Add(max(s.backoff(m.Attempts), retryAfter))
	if !m.CreatedAt.IsZero() {
		if deadline := m.CreatedAt.Add(s.maxAge); next.After(deadline) {
			next = deadline
		}
	}
	return next
}

// parseRetryAfter reads a Retry-After value, delta-seconds or HTTP-date;
// zero when absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Clamp before converting so a silly value cannot overflow into a
		// negative duration; nextAttempt clips to MaxAge anyway.
		const maxSecs = int64(100 * 365 * 24 * 3600)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
