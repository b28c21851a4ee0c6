package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Registration of the endpoint on the bus, as Magento's connector does it
// with `bin/magento oms:service-bus:register`: the JSON-RPC method
// magento.service_bus.remote.register {id, url, secret}, POSTed to the bus
// with a bearer token. Registering again is harmless, so paybridge does it
// at every start when `register` is set (never in Provision: `caddy
// validate` must not register), retrying in the background until the bus
// answers, without holding Caddy's start.

var registerClient = &http.Client{Timeout: 15 * time.Second}

// register sends the registration once and returns the bus's
// remote_endpoint: how others reach *our* endpoint through the bus.
func (b *busClient) register(ctx context.Context) (map[string]any, error) {
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      "paybridge-register-" + b.endpoint,
		"method":  "magento.service_bus.remote.register",
		"params":  map[string]any{"id": b.endpoint, "url": b.publicURL, "secret": string(b.secret)},
	})
	if err != nil {
		return nil, err
	}
	header, err := b.auth.header()
	if err != nil {
		return nil, err
	}
	resp, err := b.post(ctx, header, body)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		if header, err = b.auth.refresh(); err != nil {
			return nil, err
		}
		resp, err = b.post(ctx, header, body)
	}
	if err != nil {
		return nil, errors.New("bus unreachable")
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bus answered HTTP %d", resp.StatusCode)
	}
	var rpc struct {
		Result map[string]any `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(answer, &rpc); err != nil {
		return nil, errors.New("the bus's answer is not JSON-RPC")
	}
	if rpc.Error != nil {
		return nil, fmt.Errorf("bus refused the registration: %d %s", rpc.Error.Code, rpc.Error.Message)
	}
	if ep, ok := rpc.Result["remote_endpoint"].(map[string]any); ok {
		return ep, nil
	}
	return rpc.Result, nil
}

func (b *busClient) post(ctx context.Context, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.busURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	return registerClient.Do(req)
}

// registerLoop registers until it succeeds or ctx ends, backing off from
// 1s to 5 min, and keeps each outcome for the admin API.
func (h *magentoHandler) registerLoop(ctx context.Context) {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		ep, err := h.bus.register(ctx)
		if ctx.Err() != nil {
			return
		}
		rec := &registration{At: time.Now().UTC(), Endpoint: ep, Attempts: attempt}
		if err != nil {
			rec.Error = err.Error()
		}
		h.mu.Lock()
		h.registration = rec
		h.mu.Unlock()
		if err == nil {
			h.logger.Info("registered on the Magento integration bus",
				zap.String("handler", h.Name), zap.String("endpoint", h.bus.endpoint), zap.Any("remote_endpoint", ep))
			return
		}
		h.logger.Warn("registration on the Magento integration bus failed; retrying",
			zap.String("handler", h.Name), zap.String("endpoint", h.bus.endpoint), zap.Int("attempt", attempt),
			zap.String("error", err.Error()), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// status is the handler's registration state for the admin API.
func (h *magentoHandler) status() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]any{
		"endpoint_name": h.bus.endpoint, "delegate_url": h.bus.delegate, "register": h.register,
		"registration": h.registration,
	}
}
