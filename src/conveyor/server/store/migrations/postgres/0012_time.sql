-- Time (DESIGN A10): delayed tasks and schedules.

-- When a task was asked to start (a delay, a Run-At, a schedule's tick); NULL: at once.
-- runnable_at is when it may start next (it moves on each retry); run_at stays as asked.
ALTER TABLE tasks ADD COLUMN run_at BIGINT;

-- Claims take runnable tasks in the order they became runnable, from this index: delayed
-- tasks sit further along it and are never walked, however many wait.
DROP INDEX tasks_waiting;
CREATE INDEX tasks_runnable ON tasks (stub_id, runnable_at, seq) WHERE status IN ('PENDING','RETRY');

-- Schedules are stubs of two more types.
ALTER TABLE stubs DROP CONSTRAINT stubs_type_check;
ALTER TABLE stubs ADD CONSTRAINT stubs_type_check CHECK (type IN
    ('taskqueue/deployment', 'taskqueue/serve', 'schedule/deployment', 'schedule/serve'));
-- The tick makers' one look per pass: every schedule, without reading the queues' rows.
CREATE INDEX stubs_schedules ON stubs (id)
    WHERE type IN ('schedule/deployment', 'schedule/serve');

-- A schedule's ticks: one row per (schedule, instant), inserted by whichever gateway or agent
-- gets there first, in the transaction that makes its task; the key refuses every other. A
-- schedule is its name: a new version goes on from its predecessor's ticks.
CREATE TABLE schedule_ticks (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tick_at BIGINT NOT NULL,
    stub_id TEXT NOT NULL,
    task_id TEXT,
    catch_up BOOLEAN NOT NULL,
    made_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name, tick_at)
);
