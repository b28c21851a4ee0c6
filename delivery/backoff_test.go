package delivery

import (
	"net/http"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestBackoffDoublesCapsAndJitters(t *testing.T) {
	s := &settings{minBackoff: 100 * time.Millisecond, maxBackoff: time.Second, maxAge: time.Hour}
	base := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, b := range base {
		b *= time.Millisecond
		seen := make(map[time.Duration]bool)
		for range 200 {
			d := s.backoff(i + 1)
			if d < b/2 || d > b {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", i+1, d, b/2, b)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) barely varies: %d distinct values", i+1, len(seen))
		}
	}
	if d := s.backoff(1000); d > time.Second {
		t.Errorf("backoff(1000) = %v, overflowed the cap", d)
	}
}

func TestNextAttemptRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	s := &settings{minBackoff: time.Second, maxBackoff: 10 * time.Minute, maxAge: 72 * time.Hour}
	m := payment.Message{Attempts: 1, CreatedAt: now.Add(-time.Minute)}

	if got := s.nextAttempt(m, now, time.Hour); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("Retry-After 1h beyond MaxBackoff: next = %v", got.Sub(now))
	}
	if got := s.nextAttempt(m, now, 0); got.Sub(now) > time.Second || got.Sub(now) < time.Second/2 {
		t.Errorf("no Retry-After: next in %v", got.Sub(now))
	}
	m.CreatedAt = now.Add(-72*time.Hour + 30*time.Minute)
	if got := s.nextAttempt(m, now, 2*time.Hour); !got.Equal(now.Add(30 * time.Minute)) {
		t.Errorf("Retry-After past MaxAge: next in %v, want the 30m deadline", got.Sub(now))
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Now()
	date := now.Add(30 * time.Second).UTC().Format(http.TimeFormat)
	if d := parseRetryAfter(date, now); d <= 28*time.Second || d > 30*time.Second {
		t.Errorf("HTTP-date: %v", d)
	}
	for v, want := range map[string]time.Duration{
		"120": 2 * time.Minute, " 1 ": time.Second, "": 0, "0": 0, "-5": 0, "soon": 0,
		now.Add(-time.Hour).UTC().Format(http.TimeFormat): 0,
		"99999999999999999": 100 * 365 * 24 * time.Hour,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
