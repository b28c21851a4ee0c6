package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// marshalJS encodes v as compact JSON that JavaScript re-serialises to the
// same bytes: JSON.stringify(JSON.parse(b)) == b. Openfront parses an event
// and stringifies it again before handle-webhook sees it, so a signature is
// only checkable over bytes that survive that round trip.
//
// encoding/json differs from JSON.stringify in three ways, fixed here: it
// escapes <, > and & (SetEscapeHTML(false) stops that), it escapes U+2028
// and U+2029, and it writes invalid UTF-8 as \ufffd; JavaScript writes all
// three characters raw. Callers must use only integers (JavaScript would
// print 1.0 as 1) and map keys that are not array indexes (JavaScript puts
// integer-like keys first); struct fields meet both by construction.
func marshalJS(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return unescapeForJS(b)
}

// unescapeForJS rewrites the escapes \u2028, \u2029 and \ufffd that
// encoding/json writes inside strings as the raw characters.
func unescapeForJS(b []byte) ([]byte, error) {
	if !bytes.Contains(b, []byte(`\u`)) {
		return b, nil
	}
	out := make([]byte, 0, len(b))
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !inString:
			if c == '"' {
				inString = true
			}
			out = append(out, c)
		case c == '"':
			inString = false
			out = append(out, c)
		case c == '\\':
			if i+1 >= len(b) {
				return nil, fmt.Errorf("handlers: truncated escape in JSON")
			}
			if b[i+1] == 'u' && i+5 < len(b) {
				switch string(b[i+2 : i+6]) {
				case "2028", "2029", "fffd":
					var r rune
					fmt.Sscanf(string(b[i+2:i+6]), "%x", &r)
					out = utf8.AppendRune(out, r)
					i += 5
					continue
				}
			}
			// Any other escape is copied whole, so an escaped backslash
			// followed by "u2028" stays text.
			out = append(out, c, b[i+1])
			i++
		default:
			out = append(out, c)
		}
	}
	return out, nil
}
