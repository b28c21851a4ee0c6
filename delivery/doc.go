// Package delivery owns at-least-once HTTP delivery of the outbox: callbacks
// to platforms, notifications and event listeners all leave through it.
//
// A message is retried until a listener accepts it, with exponential backoff
// and jitter so that a listener coming back from an outage is not hit by
// every queued message at the same instant. Messages of one queue (one
// payment to one destination) go out strictly in order, because listeners
// apply them as state transitions; different queues are independent, so one
// slow listener or one poisoned payment cannot hold back the rest. A message
// still failing after MaxAge is dead-lettered, kept by the store for
// inspection and replay, so its queue can move on.
//
// Delivery is at least once, never exactly once: a listener that answered
// after our timeout, or a crash between its answer and our bookkeeping, gets
// the message again, so listeners must be idempotent.
//
// The package knows no platform: URLs, signatures and the meaning of a 200
// body come from a Resolver at send time, so a config reload or a secret
// rotation applies to work already queued. It must not import Caddy, Badger,
// or any platform's wire format, so it can be tested with a fake outbox and
// plain HTTP servers.
package delivery
