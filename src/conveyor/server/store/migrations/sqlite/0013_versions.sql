-- Versions and retention (DESIGN A11), replays (A10).
-- A stopped version (active = 0) takes no new tasks, keeps no containers and makes no ticks.
ALTER TABLE stubs ADD COLUMN active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

-- The task this one re-runs (POST /v2/task/{id}/replay); not a foreign key: the original may
-- be gone by retention while its replay is kept.
ALTER TABLE tasks ADD COLUMN replay_of TEXT;

-- The retention sweep walks finished tasks oldest first, and deletes what hangs off them.
CREATE INDEX tasks_ended ON tasks (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX callbacks_task ON callbacks (task_id);
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);
