-- Time (DESIGN A10): delayed tasks and schedules.

-- When a task was asked to start (a delay, a Run-At, a schedule's tick); NULL: at once.
-- runnable_at is when it may start next (it moves on each retry); run_at stays as asked.
ALTER TABLE tasks ADD COLUMN run_at INTEGER;

-- Claims take runnable tasks in the order they became runnable, from this index: delayed
-- tasks sit further along it and are never walked, however many wait.
DROP INDEX tasks_waiting;
CREATE INDEX tasks_runnable ON tasks (stub_id, runnable_at, seq) WHERE status IN ('PENDING','RETRY');

-- Schedules are stubs of two more types. SQLite cannot change a CHECK in place: the table
-- is made again with its rows, and the in-flight triggers of 0003 (which name it) with it.
DROP TRIGGER tasks_leave_flight;
DROP TRIGGER tasks_enter_flight;
DROP TRIGGER tasks_delete_in_flight;
CREATE TABLE stubs_new (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN
        ('taskqueue/deployment', 'taskqueue/serve', 'schedule/deployment', 'schedule/serve')),
    version INTEGER NOT NULL CHECK (version >= 1),
    config TEXT NOT NULL,
    config_version INTEGER NOT NULL,
    object_id INTEGER NOT NULL REFERENCES objects (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    in_flight INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workspace_id, name, version)
);
INSERT INTO stubs_new (id, workspace_id, name, type, version, config, config_version, object_id,
    created_at, updated_at, in_flight)
SELECT id, workspace_id, name, type, version, config, config_version, object_id, created_at,
    updated_at, in_flight FROM stubs;
DROP TABLE stubs;
ALTER TABLE stubs_new RENAME TO stubs;

CREATE TRIGGER tasks_leave_flight AFTER UPDATE OF status ON tasks
WHEN OLD.status IN ('PENDING', 'RETRY', 'RUNNING')
    AND NEW.status NOT IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight - 1 WHERE id = NEW.stub_id;
END;

CREATE TRIGGER tasks_enter_flight AFTER UPDATE OF status ON tasks
WHEN OLD.status NOT IN ('PENDING', 'RETRY', 'RUNNING')
    AND NEW.status IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight + 1 WHERE id = NEW.stub_id;
END;

CREATE TRIGGER tasks_delete_in_flight AFTER DELETE ON tasks
WHEN OLD.status IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight - 1 WHERE id = OLD.stub_id;
END;

-- The tick makers' one look per pass: every schedule, without reading the queues' rows.
CREATE INDEX stubs_schedules ON stubs (id)
    WHERE type IN ('schedule/deployment', 'schedule/serve');

-- A schedule's ticks: one row per (schedule, instant), inserted by whichever gateway or agent
-- gets there first, in the transaction that makes its task; the key refuses every other. A
-- schedule is its name: a new version goes on from its predecessor's ticks.
CREATE TABLE schedule_ticks (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tick_at INTEGER NOT NULL,
    stub_id TEXT NOT NULL,
    task_id TEXT,
    catch_up INTEGER NOT NULL CHECK (catch_up IN (0, 1)),
    made_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name, tick_at)
) WITHOUT ROWID;
