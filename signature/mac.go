package signature

import (
	"crypto/hmac"
	"hash"
)

// sum feeds parts in order rather than concatenating them, so a large body
// is never copied just to prepend a timestamp.
func sum(newHash func() hash.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(newHash, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// matchAny computes the MAC under every secret and never stops at the first
// match, so the response time does not reveal which secret (old or new)
// signed the request. Empty secrets are skipped because an empty HMAC key is
// one every attacker knows.
func matchAny(newHash func() hash.Hash, secrets [][]byte, body, got []byte) bool {
	matched := false
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		if hmac.Equal(sum(newHash, s, body), got) {
			matched = true
		}
	}
	return matched
}

// hasSecret tells a misconfiguration apart from a bad request.
func hasSecret(secrets [][]byte) bool {
	for _, s := range secrets {
		if len(s) > 0 {
			return true
		}
	}
	return false
}
