package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// job is one record for the writer: fn writes it inside the batch's
// transaction; done (buffered) receives the outcome once it is committed or
// has failed. A nil done means nobody waits: a failure is logged.
type job struct {
	what string
	fn   func(ctx context.Context, tx *wtx) error
	done chan error
}

// writer is the one goroutine that writes. It takes whatever records are
// waiting, up to a batch, and commits them in one transaction: under load
// many turns share one commit, and a lone turn is committed at once (no
// timer waits for a batch to fill). Each record of a batch runs in its own
// savepoint, so a bad record fails alone and the rest of its batch still
// commits; a lone record needs none (its failure rolls back the
// transaction, which holds nothing else).
type writer struct {
	db    *sql.DB
	stmts []*sql.Stmt // prepared on db, by writeStmt
	queue chan job
	batch int
	log   *slog.Logger

	mu     sync.RWMutex // held for reading while submitting; close takes it to stop submissions
	closed bool
	done   chan struct{}
}

func newWriter(db *sql.DB, stmts []*sql.Stmt, queue, batch int, log *slog.Logger) *writer {
	w := &writer{db: db, stmts: stmts, queue: make(chan job, queue), batch: batch, log: log, done: make(chan struct{})}
	go w.run()
	return w
}

// submit queues a job. It waits while the queue is full (back-pressure: a
// record is never dropped) unless ctx ends first.
func (w *writer) submit(ctx context.Context, j job) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	// select picks at random among ready cases: without this, a record
	// whose context has already ended would sometimes be queued anyway.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w: %w", j.what, ErrNotQueued, context.Cause(ctx))
	}
	select {
	case w.queue <- j:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store: %s: %w: %w", j.what, ErrNotQueued, context.Cause(ctx))
	}
}

// do submits a job and waits until it is committed.
func (w *writer) do(ctx context.Context, what string, fn func(context.Context, *wtx) error) error {
	j := job{what: what, fn: fn, done: make(chan error, 1)}
	if err := w.submit(ctx, j); err != nil {
		return err
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		// Still queued or being written: it will be committed; the caller
		// just stops waiting.
		return fmt.Errorf("store: %s: %w: %w", what, ErrNotConfirmed, context.Cause(ctx))
	}
}

// close stops new submissions, then lets the writer commit what is queued.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	for first := range w.queue {
		batch := []job{first}
	fill:
		for len(batch) < w.batch {
			select {
			case j, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

// commit writes one batch. It is not bound to any caller's context: a
// record accepted is written even if its turn has since been cancelled.
func (w *writer) commit(batch []job) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	sqlTx, err := w.begin(ctx)
	if err == nil {
		tx := &wtx{Tx: sqlTx, prepared: w.stmts, bound: make([]*sql.Stmt, len(w.stmts))}
		if len(batch) == 1 {
			// Alone, the record is the transaction: its failure rolls
			// back nothing else.
			errs[0] = batch[0].fn(ctx, tx)
		} else {
			for i, j := range batch {
				if errs[i], err = inSavepoint(ctx, tx, j.fn); err != nil {
					break // the transaction is unusable: the whole batch fails
				}
			}
		}
		switch {
		case err != nil: // the transaction is unusable
			_ = sqlTx.Rollback()
		case len(batch) == 1 && errs[0] != nil:
			_ = sqlTx.Rollback() // the lone record failed: nothing to commit
		default:
			err = sqlTx.Commit()
		}
	}
	for i, j := range batch {
		e := errs[i]
		if err != nil {
			e = fmt.Errorf("store: %s: commit: %w", j.what, err)
		} else if e != nil {
			e = fmt.Errorf("store: %s: %w", j.what, e)
		}
		if j.done != nil {
			j.done <- e
		} else if e != nil {
			w.log.Error("A record could not be saved", "scope", "store", "decision", "write_failed", "record", j.what, "error", e.Error())
		}
	}
}

// begin starts the batch's transaction. BEGIN IMMEDIATE already waits
// busy_timeout for another process's write lock (a CLI command); a lock held
// longer than that is tried twice more before the batch fails.
func (w *writer) begin(ctx context.Context) (*sql.Tx, error) {
	for attempt := 0; ; attempt++ {
		tx, err := w.db.BeginTx(ctx, nil)
		var se *sqlite.Error
		if err == nil || attempt == 2 || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return tx, err
		}
		w.log.Warn("The database is locked by another process; retrying", "scope", "store", "decision", "busy", "attempt", attempt+1)
	}
}

// inSavepoint runs one record in its own savepoint: recErr is the record's
// own failure (rolled back alone); txErr means the transaction itself is
// broken and the batch must not go on.
func inSavepoint(ctx context.Context, tx *wtx, fn func(context.Context, *wtx) error) (recErr, txErr error) {
	if _, err := tx.stmt(ctx, sqlSavepoint).ExecContext(ctx); err != nil {
		return err, err
	}
	if err := fn(ctx, tx); err != nil {
		if _, rerr := tx.stmt(ctx, sqlRollbackTo).ExecContext(ctx); rerr != nil {
			return err, rerr
		}
		if _, rerr := tx.stmt(ctx, sqlRelease).ExecContext(ctx); rerr != nil {
			return err, rerr
		}
		return err, nil
	}
	_, err := tx.stmt(ctx, sqlRelease).ExecContext(ctx)
	return err, err
}

var (
	sqlSavepoint  = writeSQL("SAVEPOINT rec")
	sqlRelease    = writeSQL("RELEASE rec")
	sqlRollbackTo = writeSQL("ROLLBACK TO rec")
)
