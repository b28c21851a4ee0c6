// Package paybridge is the import path that plugs paybridge into Caddy:
// `xcaddy build --with github.com/paybridge/caddy-paybridge` imports it,
// which registers the paybridge app, handler, gateways and command (all in
// package caddymodule).
package paybridge

import _ "github.com/paybridge/caddy-paybridge/caddymodule"
