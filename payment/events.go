package payment

import "time"

// EventType is a payment state change in Front-Commerce's vocabulary, plus
// the refund events its peers add.
type EventType string

const (
	PaymentAuthenticationStarted EventType = "PaymentAuthenticationStarted"
	PaymentReceived              EventType = "PaymentReceived"
	PaymentAuthorized            EventType = "PaymentAuthorized"
	PaymentRefused               EventType = "PaymentRefused"
	PaymentCancelled             EventType = "PaymentCancelled"
	PaymentCaptureStarted        EventType = "PaymentCaptureStarted"
	PaymentCaptured              EventType = "PaymentCaptured"
	PaymentCaptureFailed         EventType = "PaymentCaptureFailed"
	PaymentRefunded              EventType = "PaymentRefunded"
	PaymentRefundFailed          EventType = "PaymentRefundFailed"
)

// Event is one state change the engine recorded, numbered per payment.
type Event struct {
	ID         string    `json:"id"`
	Type       EventType `json:"type"`
	Sequence   int64     `json:"sequence"`
	TxID       string    `json:"tx_id"`
	Amount     int64     `json:"amount"`
	OccurredAt time.Time `json:"occurred_at"`
}

// eventFor maps a transaction's new state to the event it produces, or "".
// Pending voids and refunds produce nothing until they settle.
func eventFor(t *Transaction) EventType {
	switch t.Kind {
	case Authorize:
		switch t.State {
		case Pending, Retrying:
			if t.AuthRequired {
				return PaymentAuthenticationStarted
			}
			return PaymentReceived
		case Succeeded:
			return PaymentAuthorized
		case Failed:
			return PaymentRefused
		}
	case Capture:
		switch t.State {
		case Pending, Retrying:
			return PaymentCaptureStarted
		case Succeeded:
			return PaymentCaptured
		case Failed:
			return PaymentCaptureFailed
		}
	case Void:
		if t.State == Succeeded {
			return PaymentCancelled
		}
	case Refund:
		switch t.State {
		case Succeeded:
			return PaymentRefunded
		case Failed:
			return PaymentRefundFailed
		}
	}
	return ""
}
