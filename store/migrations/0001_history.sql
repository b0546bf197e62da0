-- 0001: the turn history. Every table here holds a user's history, so each
-- gets a BEFORE DELETE guard: rows are retired with UPDATE, never deleted.
-- Times are TEXT in UTC, 'YYYY-MM-DDTHH:MM:SS.sssZ' (fixed width, so they sort).

CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    hardware_id  TEXT NOT NULL UNIQUE,
    metadata     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    session_id TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'complete', 'interrupted', 'failed')),
    start_time TEXT NOT NULL,
    end_time   TEXT,
    UNIQUE (user_id, session_id)
);

-- The user's words. Never the screenshot bytes (see screenshots). user_id
-- repeats the session's, so a device's latest turns are one index range
-- (short-term memory reads them before every answer).
CREATE TABLE commands (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id),
    session_id     INTEGER NOT NULL REFERENCES sessions(id),
    prompt         TEXT NOT NULL,
    has_screenshot INTEGER NOT NULL DEFAULT 0 CHECK (has_screenshot IN (0, 1)),
    created_at     TEXT NOT NULL
);
CREATE INDEX commands_session ON commands(session_id);
CREATE INDEX commands_user ON commands(user_id, id);

-- The answer as actually sent, with the per-stage timings of the turn in
-- milliseconds since it started (NULL = the stage was not reached).
CREATE TABLE llm_answers (
    id                  INTEGER PRIMARY KEY,
    command_id          INTEGER NOT NULL UNIQUE REFERENCES commands(id),
    response            TEXT NOT NULL,
    action              TEXT CHECK (action IS NULL OR json_valid(action)),
    model               TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('complete', 'interrupted', 'failed')),
    error_kind          TEXT,
    admitted_ms         REAL,
    llm_first_token_ms  REAL,
    first_segment_ms    REAL,
    tts_first_byte_ms   REAL,
    first_audio_sent_ms REAL,
    last_chunk_sent_ms  REAL,
    total_ms            REAL NOT NULL,
    segments            INTEGER NOT NULL DEFAULT 0,
    audio_chunks        INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
);

-- Metadata only: the image itself is never stored.
CREATE TABLE screenshots (
    id         INTEGER PRIMARY KEY,
    command_id INTEGER NOT NULL REFERENCES commands(id),
    format     TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    width      INTEGER,
    height     INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX screenshots_command ON screenshots(command_id);

-- Every token spent: source is 'main', 'memory' or 'client:<source>'.
CREATE TABLE token_usage (
    id            INTEGER PRIMARY KEY,
    hardware_id   TEXT NOT NULL,
    session_id    TEXT,
    source        TEXT NOT NULL,
    model         TEXT NOT NULL DEFAULT '',
    input_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    total_tokens  INTEGER GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
    created_at    TEXT NOT NULL
);
CREATE INDEX token_usage_device ON token_usage(hardware_id, created_at);
CREATE INDEX token_usage_created ON token_usage(created_at);

CREATE TRIGGER users_no_delete BEFORE DELETE ON users
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table users: history is kept; retire rows with UPDATE'); END;
CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table sessions: history is kept; retire rows with UPDATE'); END;
CREATE TRIGGER commands_no_delete BEFORE DELETE ON commands
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table commands: history is kept; retire rows with UPDATE'); END;
CREATE TRIGGER llm_answers_no_delete BEFORE DELETE ON llm_answers
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table llm_answers: history is kept; retire rows with UPDATE'); END;
CREATE TRIGGER screenshots_no_delete BEFORE DELETE ON screenshots
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table screenshots: history is kept; retire rows with UPDATE'); END;
CREATE TRIGGER token_usage_no_delete BEFORE DELETE ON token_usage
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table token_usage: history is kept; retire rows with UPDATE'); END;
