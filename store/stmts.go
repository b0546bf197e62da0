package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The statements every turn runs are prepared once, when the store opens:
// parsing and planning SQL costs more than running these small queries.
// Each is declared next to the code that runs it, with readSQL (run on the
// read pool) or writeSQL (run by the writer, inside its transaction).
// database/sql prepares a statement again on each connection of the pool
// the first time it runs there, and keeps it.

// readStmt names a statement prepared on the read pool.
type readStmt int

// writeStmt names a statement prepared on the writer's connection.
type writeStmt int

var readSQLs, writeSQLs []string

func readSQL(query string) readStmt {
	readSQLs = append(readSQLs, query)
	return readStmt(len(readSQLs) - 1)
}

func writeSQL(query string) writeStmt {
	writeSQLs = append(writeSQLs, query)
	return writeStmt(len(writeSQLs) - 1)
}

func prepareAll(db *sql.DB, queries []string) ([]*sql.Stmt, error) {
	out := make([]*sql.Stmt, 0, len(queries))
	for _, q := range queries {
		s, err := db.Prepare(q)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("store: prepare %q: %w", q, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func closeAll(stmts []*sql.Stmt) error {
	var errs []error
	for _, s := range stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// read returns a prepared statement of the read pool.
func (db *DB) read(s readStmt) *sql.Stmt { return db.rs[s] }

// wtx is the writer's transaction for one batch. It binds a prepared
// statement to the transaction the first time a record of the batch uses it
// (Tx.StmtContext reuses the statement already prepared on the connection).
type wtx struct {
	*sql.Tx
	prepared []*sql.Stmt // the writer's, by writeStmt
	bound    []*sql.Stmt // bound to Tx, by writeStmt; nil until first use
}

// stmt returns a prepared statement bound to the transaction.
func (t *wtx) stmt(ctx context.Context, s writeStmt) *sql.Stmt {
	if t.bound[s] == nil {
		t.bound[s] = t.Tx.StmtContext(ctx, t.prepared[s])
	}
	return t.bound[s]
}
