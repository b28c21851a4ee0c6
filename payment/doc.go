// Package payment is paybridge's core: money, payments and their
// transactions, the state machine and its invariants, idempotency rules,
// canonical events, and the engine and reconciler that drive a PSP. Besides
// platform calls answered at once, the engine knows checkout sessions (paid
// later on the PSP's page: Openfront), platform commands answered by one
// notification each (Magento OMS), and authorizations made outside
// paybridge that a platform's commands act on.
//
// It owns the rules every platform shares, so that a Commerce Layer capture
// and a Magento capture obey the same balance checks. It defines the Gateway
// (a PSP) and Store (durable state) interfaces it needs and knows nothing of
// their implementations: it must not import Caddy, net/http, Badger, or any
// platform's wire format. Platforms reach it through Engine; what they say
// back to their platform is rendered by them and stored here as opaque bytes.
package payment
