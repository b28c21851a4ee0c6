package signature

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Header carries paybridge's timestamped signature, on events paybridge
// sends and on webhooks from the sandbox PSP.
const Header = "Paybridge-Signature"

// maxUnix (9999-12-31T23:59:59Z) bounds t so time.Unix cannot overflow and
// turn an absurd timestamp into one that looks fresh.
const maxUnix = 253402300799

// stamped is a parsed Paybridge-Signature value.
type stamped struct {
	// t is kept exactly as received because the sender signed these bytes,
	// not our re-formatting of them.
	t    string
	unix int64
	v1   [][sha256.Size]byte
}

// parseStamped is strict about t and v1, whose meaning we rely on, and
// ignores every other scheme (v0= test signatures, future v2=) so senders
// can add schemes without breaking us. v1 is appended to buf so the caller
// can keep the common case on its stack.
func parseStamped(header string, buf [][sha256.Size]byte) (stamped, error) {
	if header == "" {
		return stamped{}, errEmptyHeader
	}
	p := stamped{v1: buf[:0]}
	seenT := false
	for item := range strings.SplitSeq(header, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return stamped{}, errMalformedItem
		}
		switch key {
		case "t":
			if seenT {
				// Parsers disagree on which of two t's wins; refusing the
				// ambiguity keeps us from checking a different t than the
				// one a proxy or the sender's library acted on.
				return stamped{}, errDuplicateStamp
			}
			seenT = true
			unix, ok := parseUnix(val)
			if !ok {
				return stamped{}, errBadTimestamp
			}
			p.t, p.unix = val, unix
		case "v1":
			var d [sha256.Size]byte
			if len(val) != hex.EncodedLen(sha256.Size) {
				return stamped{}, errBadV1
			}
			if _, err := hex.Decode(d[:], []byte(val)); err != nil {
				return stamped{}, errBadV1
			}
			p.v1 = append(p.v1, d)
		}
	}
	if !seenT {
		return stamped{}, errMissingTimestamp
	}
	if len(p.v1) == 0 {
		return stamped{}, errMissingV1
	}
	return p, nil
}

// parseUnix accepts plain decimal digits only: strconv alone would also
// take a sign, and "+17…" and "17…" would then be two signed strings for
// one instant.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > len(strconv.Itoa(maxUnix)) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxUnix {
		return 0, false
	}
	return n, true
}
