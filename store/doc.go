// Package store owns the Badger implementation of payment.Store and
// payment.Outbox: the key layout and its schema version, atomic
// read-modify-write transactions retried on conflict, the outbox queue with
// its dead letters, and periodic value-log garbage collection.
//
// It runs inside a web server, so Badger is tuned for a small footprint
// rather than throughput, and every commit is synced before it returns:
// work is acknowledged to a platform only once it survives a crash.
//
// It knows nothing of Caddy or HTTP. Whoever embeds it decides when to open
// and close it; Badger allows one open per directory, and Open says so
// plainly when another process holds it.
package store
