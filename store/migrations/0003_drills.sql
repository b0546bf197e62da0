-- 0003: the record of restore drills (nexy drill), so the server can say
-- when a backup was last proven to restore.

CREATE TABLE drills (
    id          INTEGER PRIMARY KEY,
    backup_file TEXT NOT NULL,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    detail      TEXT NOT NULL,
    counts      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(counts)),
    ran_at      TEXT NOT NULL
);

CREATE TRIGGER drills_no_delete BEFORE DELETE ON drills
BEGIN SELECT RAISE(ABORT, 'hard delete forbidden for table drills: the drill record is kept'); END;
