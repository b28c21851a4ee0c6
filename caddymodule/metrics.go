package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Collectors are created once, here, and registered into each config's
// registry, so their values survive config reloads. Labels name kinds and
// handler or endpoint names, never URLs, ids or tokens.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "paybridge", Name: "requests_total",
		Help: "Platform requests that reached the engine, by outcome (succeeded, pending, failed, refused, replayed).",
	}, []string{"platform", "action", "outcome"})

	gatewayDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "paybridge", Name: "gateway_request_duration_seconds",
		Help:    "Duration of PSP calls, by gateway and operation.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 10},
	}, []string{"gateway", "operation"})

	deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "paybridge", Name: "deliveries_total",
		Help: "Outbound delivery attempts (callbacks and events), by target and outcome (delivered, retry, dead).",
	}, []string{"target", "outcome"})

	// The outbox gauges count what is in the store when scraped, so they
	// are right after a restart and whatever process wrote the store.
	outboxPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "paybridge", Name: "outbox_pending",
		Help: "Outbound messages waiting for delivery.",
	}, func() float64 { pending, _ := outboxCounts(); return float64(pending) })

	deadLetters = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "paybridge", Name: "dead_letters",
		Help: "Outbound messages given up after max_age, kept for inspection and replay.",
	}, func() float64 { _, dead := outboxCounts(); return float64(dead) })
)

func outboxCounts() (pending, dead int) {
	_, rt, ok := live()
	if !ok {
		return 0, 0
	}
	pending, dead, err := rt.store.OutboxCounts()
	if err != nil {
		return 0, 0
	}
	return pending, dead
}

func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{requestsTotal, gatewayDuration, deliveriesTotal, outboxPending, deadLetters} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// metricsObserver feeds the engine's observations to Prometheus.
type metricsObserver struct{}

func (metricsObserver) Operation(platform, action, outcome string) {
	requestsTotal.WithLabelValues(platform, action, outcome).Inc()
}

func (metricsObserver) GatewayCall(gateway, op string, d time.Duration) {
	gatewayDuration.WithLabelValues(gateway, op).Observe(d.Seconds())
}

// observeDelivery counts one delivery attempt.
func observeDelivery(m payment.Message, delivered, dead bool) {
	outcome := "retry"
	switch {
	case delivered:
		outcome = "delivered"
	case dead:
		outcome = "dead"
	}
	deliveriesTotal.WithLabelValues(m.Target, outcome).Inc()
}
