package delivery

import (
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Destination is where and how to send one message now. It is resolved at
// send time, so reloads and secret rotation apply to queued work.
type Destination struct {
	URL string
	// Header is added to the request, e.g. a signature computed over the
	// body now rather than at enqueue time, so it uses the current secret.
	Header http.Header
	// Body, when not nil, is sent instead of the message's body: for
	// protocols that wrap the stored message in an envelope made at send
	// time (a GraphQL mutation whose variables carry a signature).
	Body []byte
	// Reauthorize, when set, is called after a 401: it returns a header
	// with fresh credentials (a new OAuth access token), and the message is
	// sent once more at once with it.
	Reauthorize func() (http.Header, error)
	// Check, when set, inspects a 2xx answer's body; an error means not
	// delivered, for protocols that report failure inside a 200 (a JSON-RPC
	// error, GraphQL errors).
	Check func(body []byte) error
	// NotNow, when set, says why m cannot be sent yet (no access token to
	// send it with): nothing is sent, and the attempt fails with it and is
	// retried with backoff.
	NotNow string
}

// Resolver returns the destination of m in the live config. ok is false when
// m's Kind/Target is not configured: the message is not dropped, because the
// config may be fixed by a reload; it waits as an attempt that failed with
// LastError "destination not configured" and dies of old age otherwise.
type Resolver func(m payment.Message) (Destination, bool)

// Worker drains an Outbox. Zero fields take the defaults documented below;
// Outbox and Resolve are required.
type Worker struct {
	Outbox  payment.Outbox
	Resolve Resolver
	// Client sends the requests. nil: a client with a 10s timeout that does
	// not follow redirects, because a 3xx from a webhook listener is a
	// misconfiguration and following it would re-POST signed data to a
	// place nobody configured.
	Client *http.Client
	// MaxAge is how long a message is retried before it is dead-lettered,
	// counted from its CreatedAt; default 72h.
	MaxAge time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff; defaults 1s
	// and 10m. A Retry-After answer may push an attempt past MaxBackoff, see
	// nextAttempt.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Poll is the safety re-scan period for when no signal arrives (a
	// missed signal, or a message rescheduled by another process); default 1s.
	Poll time.Duration
	// Concurrency is how many queues are delivered in parallel; default 16.
	Concurrency int
	Logger      *zap.Logger
	Now         func() time.Time
	// OnResult is called after every attempt, for metrics.
	OnResult func(m payment.Message, delivered bool, dead bool)

	kickOnce sync.Once
	kick     chan struct{}
}

const (
	defaultTimeout     = 10 * time.Second
	defaultMaxAge      = 72 * time.Hour
	defaultMinBackoff  = time.Second
	defaultMaxBackoff  = 10 * time.Minute
	defaultPoll        = time.Second
	defaultConcurrency = 16
	// headsLimit bounds one scan so a huge backlog costs bounded memory per
	// pass; queues beyond it are reached as earlier ones drain.
	headsLimit = 1000
)

// Kick asks for a re-scan now, e.g. after a dead letter was replayed. It
// never blocks: pending kicks collapse into one.
func (w *Worker) Kick() {
	select {
	case w.kickCh() <- struct{}{}:
	default:
	}
}

// kickCh is created lazily so that Kick works on a Worker literal before
// (or without) Run.
func (w *Worker) kickCh() chan struct{} {
	w.kickOnce.Do(func() { w.kick = make(chan struct{}, 1) })
	return w.kick
}

// settings are the Worker's fields with defaults applied, copied once so
// that Run never writes to the caller's struct.
type settings struct {
	outbox      payment.Outbox
	resolve     Resolver
	client      *http.Client
	timeout     time.Duration
	maxAge      time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	poll        time.Duration
	concurrency int
	log         *zap.Logger
	now         func() time.Time
	onResult    func(m payment.Message, delivered bool, dead bool)
}

func (w *Worker) settings() *settings {
	s := &settings{
		outbox:      w.Outbox,
		resolve:     w.Resolve,
		client:      w.Client,
		maxAge:      w.MaxAge,
		minBackoff:  w.MinBackoff,
		maxBackoff:  w.MaxBackoff,
		poll:        w.Poll,
		concurrency: w.Concurrency,
		log:         w.Logger,
		now:         w.Now,
		onResult:    w.OnResult,
	}
	if s.client == nil {
		s.client = &http.Client{
			Timeout: defaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	s.timeout = s.client.Timeout
	if s.timeout <= 0 {
		// A client without a timeout would let one hung listener hold a
		// concurrency slot forever.
		s.timeout = defaultTimeout
	}
	if s.maxAge <= 0 {
		s.maxAge = defaultMaxAge
	}
	if s.minBackoff <= 0 {
		s.minBackoff = defaultMinBackoff
	}
	if s.maxBackoff <= 0 {
		s.maxBackoff = defaultMaxBackoff
	}
	if s.maxBackoff < s.minBackoff {
		s.maxBackoff = s.minBackoff
	}
	if s.poll <= 0 {
		s.poll = defaultPoll
	}
	if s.concurrency <= 0 {
		s.concurrency = defaultConcurrency
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.resolve == nil {
		s.resolve = func(payment.Message) (Destination, bool) { return Destination{}, false }
	}
	return s
}
