package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// The ledger is a text file with one line per operation the sandbox really
// executed:
//
//	<RFC 3339 time, nanoseconds> <operation> <key> <amount> <currency>
//
// operation is an operation kind (authorize, capture, void, refund) or
// "vault"; amount is in minor units (0 for vault). Fields are separated by
// single spaces. The engine's idempotency keys contain no spaces, but the
// ledger does not rely on it: bytes up to and including space, DEL and '%'
// are written as %XX, an empty field as "-", and a field that is exactly
// "-" as "%2D". Each line is appended with one write and synced before the
// operation's answer is returned, so a line in the file is an operation
// that executed, and an operation whose answer a caller saw has its line.

// Entry is one ledger line.
type Entry struct {
	Time     time.Time
	Op       string // "authorize", "capture", "void", "refund" or "vault"
	Key      string // the PSP idempotency key
	Amount   int64
	Currency string
}

// record appends a ledger line and syncs it. An error is a fault whose
// outcome is unknown: the line may have been written.
func (s *Sandbox) record(now time.Time, op, key string, amount int64, currency string) error {
	if s.ledger == nil {
		return nil
	}
	line := make([]byte, 0, 64+len(key))
	line = now.UTC().AppendFormat(line, time.RFC3339Nano)
	line = append(line, ' ')
	line = appendField(line, op)
	line = append(line, ' ')
	line = appendField(line, key)
	line = append(line, ' ')
	line = strconv.AppendInt(line, amount, 10)
	line = append(line, ' ')
	line = appendField(line, currency)
	line = append(line, '\n')

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return &payment.Fault{Sent: false, Err: ErrClosed}
	}
	// A PSP that gets an operation again under an idempotency key it has
	// executed answers it again and charges nothing: the engine relies on
	// that when it re-sends an operation whose answer a crash lost. So a
	// repeat is not executed (not recorded) again. What the ledger still
	// catches is the real double charge: one operation under two keys.
	s.executed.mu.Lock()
	defer s.executed.mu.Unlock()
	pair := op + " " + key
	if _, done := s.executed.m[pair]; done {
		return nil
	}
	if _, err := s.ledger.Write(line); err != nil {
		return &payment.Fault{Sent: true, Err: fmt.Errorf("sandbox: writing ledger: %w", err)}
	}
	if err := s.ledger.Sync(); err != nil {
		return &payment.Fault{Sent: true, Err: fmt.Errorf("sandbox: syncing ledger: %w", err)}
	}
	s.executed.m[pair] = struct{}{}
	return nil
}

// keySet is the (operation, key) pairs a ledger file records. One per file
// per process, shared by the sandboxes of overlapping configs (a reload
// creates a new one on the same file), loaded from the file once, so it
// also knows what executed before a restart.
type keySet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (k *keySet) has(op, key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[op+" "+key]
	return ok
}

var (
	keySetsMu sync.Mutex
	keySets   = map[string]*keySet{}
)

func ledgerKeys(path string) (*keySet, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: ledger path: %w", err)
	}
	keySetsMu.Lock()
	defer keySetsMu.Unlock()
	if ks, ok := keySets[abs]; ok {
		return ks, nil
	}
	entries, err := ReadLedger(abs)
	if err != nil {
		return nil, err
	}
	ks := &keySet{m: make(map[string]struct{}, len(entries))}
	for _, e := range entries {
		ks.m[e.Op+" "+e.Key] = struct{}{}
	}
	keySets[abs] = ks
	return ks, nil
}

const hexDigits = "0123456789ABCDEF"

func appendField(b []byte, s string) []byte {
	switch s {
	case "":
		return append(b, '-')
	case "-":
		return append(b, "%2D"...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '%' {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

func parseField(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// ReadLedger parses the ledger file at path, in file order. A last line
// without its newline that does not parse is a write torn by a machine
// crash (its operation never answered) and is left out; any other
// malformed line is an error naming it.
func ReadLedger(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reading ledger: %w", err)
	}
	var entries []Entry
	for n := 1; len(data) > 0; n++ {
		line, rest, terminated := bytes.Cut(data, []byte{'\n'})
		data = rest
		if len(line) == 0 {
			continue
		}
		e, err := parseLine(string(line))
		if err != nil {
			if !terminated {
				break
			}
			return nil, fmt.Errorf("sandbox: ledger %s line %d: %w", path, n, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func parseLine(line string) (Entry, error) {
	f := strings.Split(line, " ")
	if len(f) != 5 {
		return Entry{}, fmt.Errorf("%d fields, want 5", len(f))
	}
	var e Entry
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, f[0]); err != nil {
		return Entry{}, err
	}
	if e.Op, err = parseField(f[1]); err != nil {
		return Entry{}, err
	}
	if e.Key, err = parseField(f[2]); err != nil {
		return Entry{}, err
	}
	if e.Amount, err = strconv.ParseInt(f[3], 10, 64); err != nil {
		return Entry{}, err
	}
	if e.Currency, err = parseField(f[4]); err != nil {
		return Entry{}, err
	}
	return e, nil
}
