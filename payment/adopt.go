package payment

import (
	"context"
	"errors"
)

// adopt answers a repeat of a call whose first delivery never got its answer
// recorded: the process died while the PSP call was in flight (we hold the
// key's lock, so nobody in this process is answering it). The transaction
// is finished in the background by the reconciler; the repeat is told what
// is known now. adopted is false when the earlier attempt failed, so the
// repeat goes on as a new attempt.
func (e *Engine) adopt(ctx context.Context, req Request, rec *IdempotencyRecord, render Render) (ans Answer, out Verdict, adopted bool, err error) {
	err = e.updatePayment(ctx, rec.PaymentID, func(tx Tx) error {
		adopted = false
		// rec was read before the payment's lock was taken: the
		// reconciler may have finished the call since. A command it
		// failed is answered by its notification and must not run again.
		cur, err := tx.Idempotency(req.Key)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		case cur.Done:
			adopted = true
			ans, out, err = answerDone(cur, req, render, tx.Payment)
			return err
		}
		rec = cur
		p, err := tx.Payment(rec.PaymentID)
		if errors.Is(err, ErrNotFound) {
			return tx.DeleteIdempotency(req.Key)
		}
		if err != nil {
			return err
		}
		t := p.TxByID(rec.TxID)
		if t == nil || t.State == Failed {
			return tx.DeleteIdempotency(req.Key)
		}
		if refusal := reusedFor(rec, req); refusal != nil {
			adopted = true // answered: refused, and nothing written
			out = Verdict{Payment: p, Err: refusal}
			ans = render(out)
			return nil
		}
		now := e.now()
		before := len(p.Events)
		adopted = true
		done := true
		switch {
		case t.State == Succeeded:
		case req.Policy.Async:
			if t.ActionID == "" {
				t.ActionID = newID("pba_")
			}
			t.Notify = true
			t.NextCheck = now
			if t.State == Processing {
				// Its first call was in flight when the process died.
				t.Uncertain = true
				p.apply(t, Retrying, now)
			}
		default:
			e.fail(p, t, CodeGatewayUnavailable, "the payment gateway could not be reached in time", true, now)
			done = false
		}
		out = Verdict{Payment: p, Tx: t, Err: txError(t)}
		ans = render(out)
		if err := e.emit(tx, p, before, now); err != nil {
			return err
		}
		if err := tx.PutPayment(p); err != nil {
			return err
		}
		if !done {
			return tx.DeleteIdempotency(req.Key)
		}
		return tx.PutIdempotency(recordOf(req, p, t, true, ans, now))
	})
	if err == nil && adopted {
		e.Kick()
	}
	return ans, out, adopted, err
}
