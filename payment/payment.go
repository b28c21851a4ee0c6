package payment

import "time"

// Kind is the operation a transaction performs at the PSP.
type Kind string

const (
	Authorize Kind = "authorize"
	Capture   Kind = "capture"
	Void      Kind = "void"
	Refund    Kind = "refund"
	// Validate asks the PSP whether an authorization still holds (Magento
	// OMS's validate); it moves no money.
	Validate Kind = "validate"
	// Revalidate is Validate that re-authorizes an expired authorization:
	// a succeeded revalidation whose PSPRef differs from the authorization's
	// names the new authorization (Magento OMS's new_gateway_key).
	Revalidate Kind = "revalidate"
)

// TxState is where a transaction stands. Only Succeeded and Failed are final.
type TxState string

const (
	// Processing: a synchronous PSP call is in flight for a platform request.
	// Found after a crash (nobody in this process holds it), it is an orphan
	// the reconciler finishes.
	Processing TxState = "processing"
	// Retrying: the PSP was unreachable; background attempts continue until
	// the transaction's GiveUpAt.
	Retrying TxState = "retrying"
	// Pending: the PSP accepted the operation and will settle it later.
	Pending   TxState = "pending"
	Succeeded TxState = "succeeded"
	Failed    TxState = "failed"
)

// Final reports whether s can no longer change.
func (s TxState) Final() bool { return s == Succeeded || s == Failed }

// Status is a payment's state as a whole, derived from its transactions.
type Status string

const (
	// StatusOpen: a checkout session, created for a platform that lets the
	// customer choose how to pay on the PSP's page; nothing was authorized.
	StatusOpen       Status = "open"
	StatusPending    Status = "pending"    // authorization not settled yet
	StatusAuthorized Status = "authorized" // authorized, nothing captured
	StatusRefused    Status = "refused"    // authorization declined or failed
	StatusCancelled  Status = "cancelled"  // voided
	StatusCaptured   Status = "captured"   // something captured (refunds do not change this)
)

// Purchase names what is being paid for on the platform: an order when the
// platform has one, else a cart.
type Purchase struct {
	OrderID     string `json:"orderId,omitempty"`
	OrderNumber string `json:"orderNumber,omitempty"`
	CartID      string `json:"cartId,omitempty"`
	// CollectionID is the platform's payment collection (Openfront groups
	// a cart's payment sessions in one).
	CollectionID string `json:"paymentCollectionId,omitempty"`
}

// Payment is one authorization and everything done with it afterwards.
type Payment struct {
	ID       string   `json:"id"`
	Platform string   `json:"platform"` // "commercelayer", ...
	Handler  string   `json:"handler"`  // the platform handler's name; outbound work is addressed to it
	Gateway  string   `json:"gateway"`  // the gateway's configured name
	Purchase Purchase `json:"purchase"`
	Currency string   `json:"currency"`
	Amount   int64    `json:"amount"` // requested authorization amount
	// SourceToken is the platform's payment source token, needed for later
	// operations at the PSP. It is never logged or shown whole.
	SourceToken string `json:"source_token"`
	Status      Status `json:"status"`
	// Settled totals; reservations by transactions in flight are derived.
	Authorized int64          `json:"authorized"`
	Captured   int64          `json:"captured"`
	Refunded   int64          `json:"refunded"`
	Txs        []*Transaction `json:"transactions"`
	// Aliases are more tokens that resolve to the payment: the new gateway
	// keys of re-authorizations, as a platform names them later.
	Aliases   []string  `json:"aliases,omitempty"`
	Events    []Event   `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Transaction is one operation at the PSP.
type Transaction struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// Token is the transaction token the platform holds (>= 96 random bits).
	Token string `json:"token"`
	// Parent is the token of the transaction this one acts on: a capture's
	// or void's authorization, a refund's capture.
	Parent string  `json:"parent,omitempty"`
	Amount int64   `json:"amount"`
	State  TxState `json:"state"`
	// PSPKey is the PSP idempotency key, derived from the platform call's
	// natural key, so a repeat after an unknown outcome cannot charge twice.
	PSPKey string `json:"psp_key"`
	PSPRef string `json:"psp_ref,omitempty"`
	// IdempotencyKey is the platform call's natural key, to finish its record.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// ActionID is set when the platform was answered "accepted, pending";
	// Notify then says the platform is owed a callback with the outcome.
	ActionID string `json:"action_id,omitempty"`
	Notify   bool   `json:"notify,omitempty"`
	// Verify marks a failure told to the platform whose PSP outcome is
	// unknown: the reconciler asks the PSP and undoes what went through.
	Verify bool `json:"verify,omitempty"`
	// Uncertain: some attempt may have reached the PSP without an answer;
	// if the transaction ends failed, its outcome must be verified.
	Uncertain bool `json:"uncertain,omitempty"`
	// ExecutedAnyway: verification found that the PSP executed this
	// capture or refund after the platform was told it failed. The money
	// moved, so its amount stays counted against the balance.
	ExecutedAnyway bool `json:"executed_anyway,omitempty"`
	// Command is the platform's command this transaction carries out, kept
	// for the notification that answers it (opaque to the engine). A
	// transaction with a command is notified whatever its outcome, and its
	// call is remembered even when it failed: the platform sends a command
	// once and waits for exactly one answer (Magento OMS).
	Command []byte `json:"command,omitempty"`
	// AuthRequired: the PSP waits for the customer (3-D Secure).
	AuthRequired bool `json:"auth_required,omitempty"`
	// Session: an authorization of a checkout session (Engine.Open's
	// payment), made by the customer on the PSP's page. The page may only
	// act on such payments.
	Session bool `json:"session,omitempty"`
	// Voided: an authorization the platform was told had failed, which
	// verification found made at the PSP and voided. Its PSP key names a
	// voided authorization: a repeat of the call cannot be done under it.
	Voided    bool              `json:"voided,omitempty"`
	Code      string            `json:"code,omitempty"`
	Message   string            `json:"message,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
	Attempts  int               `json:"attempts"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	NextCheck time.Time         `json:"next_check,omitzero"`
	GiveUpAt  time.Time         `json:"give_up_at,omitzero"`
}

// Open reports whether the transaction still needs background work.
func (t *Transaction) Open() bool { return !t.State.Final() || t.Verify }

// Tx returns the transaction with the given token, or nil.
func (p *Payment) Tx(token string) *Transaction {
	for _, t := range p.Txs {
		if t.Token == token || (t.ActionID != "" && t.ActionID == token) {
			return t
		}
	}
	return nil
}

// IsSession reports whether p is a checkout session (opened by Engine.Open,
// authorized on the PSP's page) rather than a payment a platform
// authorized itself.
func (p *Payment) IsSession() bool {
	for _, t := range p.Txs {
		if t.Kind == Authorize {
			return t.Session
		}
	}
	return p.Status == StatusOpen
}

// TxByID returns the transaction with the given id, or nil.
func (p *Payment) TxByID(id string) *Transaction {
	for _, t := range p.Txs {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// Authorization returns the payment's authorization transaction: the
// latest, since a checkout session may be confirmed again after a decline.
func (p *Payment) Authorization() *Transaction {
	for i := len(p.Txs) - 1; i >= 0; i-- {
		if t := p.Txs[i]; t.Kind == Authorize {
			return t
		}
	}
	return nil
}

// Open reports whether any transaction still needs background work; the
// store keeps such payments in its index of pending work.
func (p *Payment) Open() bool {
	for _, t := range p.Txs {
		if t.Open() {
			return true
		}
	}
	return false
}

// Tokens lists every token that must resolve to this payment: transaction
// tokens, action ids and PSP keys (PSP webhooks name operations by key).
// A failed transaction's PSP key is left out: the platform's repeat of that
// call reuses the key, and it must keep leading to the repeat's payment.
func (p *Payment) Tokens() []string {
	out := make([]string, 0, 3*len(p.Txs)+len(p.Aliases))
	out = append(out, p.Aliases...)
	for _, t := range p.Txs {
		out = append(out, t.Token)
		if t.State != Failed {
			out = append(out, t.PSPKey)
		}
		if t.ActionID != "" && t.ActionID != t.Token {
			out = append(out, t.ActionID)
		}
	}
	return out
}
