package handlers

import "net/http"

// While paybridge is starting or stopping (the store is not open), every
// caller gets a 503 in its own format, with Retry-After: its request did
// nothing, and sending it again is safe.

const unavailableMessage = "paybridge is starting or stopping; try again"

func unavailableHeader(w http.ResponseWriter) { w.Header().Set("Retry-After", "1") }

// ServeUnavailable answers in Commerce Layer's error format.
func (h *CommerceLayer) ServeUnavailable(w http.ResponseWriter) {
	unavailableHeader(w)
	writeAnswer(w, clRefusal(http.StatusServiceUnavailable, "unavailable", unavailableMessage, nil))
}

// ServeUnavailable answers in Openfront's error format.
func (h *Openfront) ServeUnavailable(w http.ResponseWriter) {
	unavailableHeader(w)
	writeAnswer(w, ofError(http.StatusServiceUnavailable, unavailableMessage))
}

// ServeUnavailable answers with a JSON-RPC internal error.
func (h *Magento) ServeUnavailable(w http.ResponseWriter) {
	unavailableHeader(w)
	writeRPC(w, http.StatusServiceUnavailable, nil, &rpcError{Code: rpcInternalError, Message: unavailableMessage})
}

// ServeUnavailable answers as the gateway routes' errors are shaped.
func (g *GatewayRoutes) ServeUnavailable(w http.ResponseWriter) {
	unavailableHeader(w)
	writeAnswer(w, gatewayError(http.StatusServiceUnavailable, "unavailable", unavailableMessage))
}
