// Package caddymodule is paybridge's Caddy glue: module registration, the
// Caddyfile and JSON config, the paybridge app (one shared store, engine and
// delivery worker per storage directory, kept open across reloads by a
// usage pool), the HTTP handler, and the `caddy paybridge` command.
//
// It holds no payment rules: those are in package payment, and platform
// formats in package handlers. It only wires them to Caddy.
package caddymodule
