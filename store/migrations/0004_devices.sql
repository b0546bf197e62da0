-- 0004: devices (pairing, per-device bearer tokens and daily limits), and an
-- index that makes "turns since local midnight" one index range.

CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    hardware_id   TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'revoked')),
    first_seen_at TEXT NOT NULL,
    -- The first words the device sent, so the owner can recognise it.
    first_prompt  TEXT NOT NULL DEFAULT '',
    approved_at   TEXT,
    revoked_at    TEXT,
    -- SHA-256 (hex) of the device's bearer token; NULL = the device has none.
    token_sha256  TEXT CHECK (token_sha256 IS NULL OR length(token_sha256) = 64),
    -- Per-device daily limits; NULL = the quotas.* default, 0 = unlimited.
    daily_turns   INTEGER CHECK (daily_turns IS NULL OR daily_turns >= 0),
    daily_tokens  INTEGER CHECK (daily_tokens IS NULL OR daily_tokens >= 0),
    -- Raised on every change, database-wide: the server polls max(version)
    -- to see changes made by the CLI (another process) within a second.
    version       INTEGER NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX devices_version ON devices(version);

CREATE INDEX commands_user_time ON commands(user_id, created_at);

CREATE TRIGGER devices_no_delete BEFORE DELETE ON devices
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table devices: revoke a device instead'); END;
