package delivery

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

// attempt sends m once and records the outcome in the outbox. It returns a
// hold time when recording failed (see finished), zero otherwise.
func (s *settings) attempt(ctx context.Context, m payment.Message) time.Time {
	out := s.send(ctx, m)
	if out.aborted {
		return time.Time{}
	}
	now := s.now()
	fields := func(extra ...zap.Field) []zap.Field {
		return append([]zap.Field{
			zap.String("kind", m.Kind),
			zap.String("target", m.Target),
			zap.String("payment_id", m.PaymentID),
			zap.Uint64("seq", m.Seq),
		}, extra...)
	}

	if out.ok {
		if err := s.outbox.Delivered(m); err != nil {
			// The listener has it; a resend after the hold is a duplicate,
			// which at-least-once allows.
			s.log.Error("delivery: recording delivery", fields(zap.Error(err))...)
			return now.Add(s.backoff(m.Attempts + 1))
		}
		if m.Attempts > 0 {
			s.log.Info("delivery: delivered after retries", fields(zap.Int("attempts", m.Attempts+1))...)
		}
		s.result(m, true, false)
		return time.Time{}
	}

	m.Attempts++
	m.LastError = out.err
	if s.expired(m, now) {
		m.Dead = true
		if err := s.outbox.Kill(m); err != nil {
			s.log.Error("delivery: dead-lettering", fields(zap.Error(err))...)
			return now.Add(s.backoff(m.Attempts))
		}
		s.log.Error("delivery: dead-lettered",
			fields(zap.Int("attempt", m.Attempts), zap.String("error", m.LastError),
				zap.Time("created_at", m.CreatedAt))...)
		s.result(m, false, true)
		return time.Time{}
	}

	seen := m.NextAttempt
	m.NextAttempt = s.nextAttempt(m, now, out.retryAfter)
	s.log.Warn("delivery: attempt failed",
		fields(zap.Int("attempt", m.Attempts), zap.String("error", m.LastError),
			zap.Time("next_attempt", m.NextAttempt))...)
	if err := s.outbox.Reschedule(m, seen); err != nil {
		s.log.Error("delivery: rescheduling", fields(zap.Error(err))...)
		s.result(m, false, false)
		return m.NextAttempt
	}
	s.result(m, false, false)
	return time.Time{}
}

// expired reports whether m has outlived MaxAge. A zero CreatedAt (a bug in
// whoever enqueued it) does not count as ancient: retrying it forever is
// better than dead-lettering it on its first hiccup.
func (s *settings) expired(m payment.Message, now time.Time) bool {
	return !m.CreatedAt.IsZero() && now.Sub(m.CreatedAt) > s.maxAge
}

func (s *settings) result(m payment.Message, delivered, dead bool) {
	if s.onResult != nil {
		s.onResult(m, delivered, dead)
	}
}
