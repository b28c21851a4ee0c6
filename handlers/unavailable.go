package handlers

import (
	"errors"
	"net/http"

	"github.com/paybridge/caddy-paybridge/payment"
)

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

// A delivery of a call that waited out its deadline behind an earlier
// delivery of the same call (or the check of its outcome at the PSP) did
// nothing: it gets a 503 with Retry-After in its caller's format, and
// sending it again gets the call's outcome.
const inProgressMessage = "an earlier delivery of this call is still in progress and nothing was done for this one; send it again shortly to get its outcome"

// inProgress answers a delivery refused with payment.ErrCallInProgress;
// false for any other error.
func inProgress(w http.ResponseWriter, err error, answer func(msg string) payment.Answer) bool {
	if !errors.Is(err, payment.ErrCallInProgress) {
		return false
	}
	unavailableHeader(w)
	writeAnswer(w, answer(inProgressMessage))
	return true
}
