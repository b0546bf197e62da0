-- 0002: what the assistant knows about its user (SPEC §8). Long-term facts
-- and daily digests live here; short-term memory is read from the turn
-- history itself. "Forget" sets retired_at; nothing is ever deleted.

CREATE TABLE memories (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id),
    kind           TEXT NOT NULL CHECK (kind IN ('fact', 'digest')),
    slot           TEXT NOT NULL DEFAULT '',  -- facts: name, email, preference, note, ...
    day            TEXT,                      -- digests: YYYY-MM-DD (UTC)
    content        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    retired_at     TEXT,
    retired_reason TEXT
);
CREATE INDEX memories_active ON memories(user_id, kind) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX memories_one_digest_a_day ON memories(user_id, day) WHERE kind = 'digest' AND retired_at IS NULL;

-- "Forget everything about me": turns before this instant are no longer
-- short-term memory (the history itself stays).
ALTER TABLE users ADD COLUMN memory_cleared_at TEXT;

CREATE TRIGGER memories_no_delete BEFORE DELETE ON memories
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table memories: retire facts with UPDATE (nexy memory forget)'); END;
