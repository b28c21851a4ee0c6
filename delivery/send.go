package delivery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/paybridge/caddy-paybridge/payment"
)

const (
	// maxBody bounds what Check sees, so a listener answering with an
	// endless body cannot exhaust memory.
	maxBody = 1 << 20
	// maxDrain is read from answers nobody inspects so the connection can
	// be reused; beyond it, closing is cheaper than reading.
	maxDrain = 64 << 10
	// maxErrLen bounds LastError, which is stored with every message.
	maxErrLen = 200
)

// outcome is what one send achieved. err is a short description safe to
// store and log: it never holds the URL, headers or bodies, which may carry
// secrets (userinfo, tokens in query strings, signatures).
type outcome struct {
	ok         bool
	aborted    bool // Run's ctx ended: not an attempt at all
	err        string
	retryAfter time.Duration
}

func (s *settings) send(ctx context.Context, m payment.Message) outcome {
	dest, ok := s.resolve(m)
	if !ok {
		return outcome{err: "destination not configured"}
	}
	if dest.NotNow != "" {
		return outcome{err: truncate(dest.NotNow)}
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	body := m.Body
	if dest.Body != nil {
		body = dest.Body
	}
	resp, err := s.post(rctx, dest.URL, dest.Header, body)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && dest.Reauthorize != nil {
		// An access token the receiver no longer takes (expired early,
		// revoked): get a new one and try once more now.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		resp.Body.Close()
		header, rerr := dest.Reauthorize()
		if rerr != nil {
			return outcome{err: truncate("reauthorizing: " + rerr.Error())}
		}
		resp, err = s.post(rctx, dest.URL, header, body)
	}
	if err != nil {
		if ctx.Err() != nil {
			return outcome{aborted: true}
		}
		return outcome{err: describe(err)}
	}
	defer resp.Body.Close()
	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), s.now())

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return outcome{err: "HTTP " + strconv.Itoa(resp.StatusCode), retryAfter: retryAfter}
	}
	if dest.Check == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return outcome{ok: true}
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if ctx.Err() != nil {
			return outcome{aborted: true}
		}
		return outcome{err: "reading answer: " + describe(err)}
	}
	if err := dest.Check(answer); err != nil {
		return outcome{err: truncate("rejected: " + err.Error()), retryAfter: retryAfter}
	}
	return outcome{ok: true}
}

// truncate keeps s within maxErrLen bytes without splitting a rune.
func truncate(s string) string {
	if len(s) <= maxErrLen {
		return s
	}
	s = s[:maxErrLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// post sends one attempt of body to url with header added.
func (s *settings) post(ctx context.Context, url string, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, errInvalidURL
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h // net/http ignores a Host entry in Header
	}
	return s.client.Do(req)
}

var errInvalidURL = errors.New("invalid destination URL")
