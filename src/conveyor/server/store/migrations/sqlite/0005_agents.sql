-- Live agents and what they run, so a gateway can warn when a task lands on a version that no
-- agent runs (DESIGN A11): an agent runs every deployed stub (runs_deployed) and/or the serve
-- stubs it registered (stub_ids, a JSON list). Rows older than a few heartbeats are dead.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    runs_deployed INTEGER NOT NULL,
    stub_ids TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE INDEX agents_heartbeat ON agents (heartbeat_at);
