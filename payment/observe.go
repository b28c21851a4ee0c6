package payment

import "time"

// Observer is told what the engine does, for metrics. The core knows no
// metrics library; the Caddy glue implements this with Prometheus.
type Observer interface {
	// Operation: one platform request done; outcome is succeeded, pending,
	// failed, refused or replayed.
	Operation(platform, action, outcome string)
	// GatewayCall: one PSP call (op is a Kind, "status" or "vault").
	GatewayCall(gateway, op string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Operation(string, string, string)          {}
func (nopObserver) GatewayCall(string, string, time.Duration) {}

// timed reports the duration of a PSP call started at start.
func (e *Engine) timed(gateway, op string, start time.Time) {
	e.observer.GatewayCall(gateway, op, time.Since(start))
}
