// Package handlers owns the platforms' wire contracts (Commerce Layer's
// external gateway, Openfront's custom HTTP provider) and the gateways'
// PSP-facing routes (webhooks, the sandbox's test checkout page): it checks
// a caller's signature or key, decodes its requests into engine calls, and
// encodes the engine's verdicts, callbacks, relayed events and pages in the
// caller's own format.
//
// It is plain net/http: it must not import Caddy (the caddymodule package
// wires it in) nor Badger (it reaches state only through payment.Engine).
package handlers
