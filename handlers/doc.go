// Package handlers holds one file per platform contract: it checks a
// platform's signature, decodes its requests into engine calls, and encodes
// the engine's verdicts and callbacks in the platform's own format.
//
// It is plain net/http: it must not import Caddy (the caddymodule package
// wires it in) nor Badger (it reaches state only through payment.Engine).
package handlers
