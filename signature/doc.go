// Package signature owns the HMAC schemes paybridge speaks: Commerce
// Layer's base64 HMAC-SHA256 header, paybridge's own timestamped
// "t=…,v1=…" header (also used by the sandbox PSP's webhooks) and the
// Magento integration bus's "sha1=" header.
//
// Every check compares in constant time and accepts several secrets, so a
// secret can be rotated without dropping traffic: the new secret is
// configured next to the old one, senders sign with both, and the old one
// is removed once nothing uses it any more.
//
// Errors never carry a secret or a whole signature, because they end up in
// logs and HTTP responses.
//
// This package must import nothing from paybridge besides the standard
// library: it sits at the bottom of the dependency graph so every other
// package can use it without cycles, and so the security-sensitive code can
// be audited on its own.
package signature
