-- Seeing into a task (DESIGN A8): each attempt kept as a row when it ends, and every line a
-- task's process wrote. A running attempt is read from its task row (attempt_started_at),
-- so a claim writes no extra row: only an attempt's end does.
ALTER TABLE tasks ADD COLUMN attempt_started_at INTEGER;

CREATE TABLE task_attempts (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    container_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN
        ('COMPLETE', 'FAILED', 'RETRY', 'TIMEOUT', 'CANCELLED', 'CRASHED', 'LOST')),
    error TEXT,
    exit_code INTEGER,
    exit_signal TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

-- A task's lines in the order they were stored; the id is the reading cursor.
CREATE TABLE task_logs (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    at INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs (task_id, id);

-- What each task has kept of its lines, against the per-task limits; `told` of `dropped`
-- were announced by a marker line.
CREATE TABLE task_log_totals (
    task_id TEXT PRIMARY KEY,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    told INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
