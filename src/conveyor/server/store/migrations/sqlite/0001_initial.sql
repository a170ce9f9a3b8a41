-- Conveyor schema v1 (SQLite). Instants are integer microseconds since the epoch (UTC).

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    signing_secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    created_at INTEGER NOT NULL
);

CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace_id, sha256)
);

CREATE TABLE stubs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('taskqueue/deployment', 'taskqueue/serve')),
    version INTEGER NOT NULL CHECK (version >= 1),
    config TEXT NOT NULL,
    config_version INTEGER NOT NULL,
    object_id INTEGER NOT NULL REFERENCES objects (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (workspace_id, name, version)
);

CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL,
    stub_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('PENDING', 'RUNNING', 'COMPLETE', 'RETRY', 'CANCELLED', 'TIMEOUT', 'EXPIRED', 'FAILED')),
    payload TEXT NOT NULL,
    callback_url TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout_s REAL NOT NULL,
    ttl_s REAL NOT NULL,
    retry_backoff_s REAL NOT NULL,
    container_id TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL,
    runnable_at INTEGER NOT NULL,
    expires_at INTEGER,
    lease_expires_at INTEGER,
    result TEXT,
    error TEXT,
    -- ended_at is set exactly on terminal statuses; a RUNNING attempt always has a lease.
    CHECK ((status IN ('COMPLETE', 'CANCELLED', 'TIMEOUT', 'EXPIRED', 'FAILED'))
           = (ended_at IS NOT NULL)),
    CHECK (status <> 'RUNNING' OR lease_expires_at IS NOT NULL)
);

-- Claims and queue depth: only waiting tasks are indexed, so they stay flat as history grows.
CREATE INDEX tasks_waiting ON tasks (stub_id, seq) WHERE status IN ('PENDING','RETRY');
CREATE INDEX tasks_workspace ON tasks (workspace_id, seq);
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX tasks_stub_status ON tasks (stub_id, status);

CREATE TABLE idempotency_keys (
    workspace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
) WITHOUT ROWID;

CREATE TABLE outputs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outputs_task ON outputs (task_id);

CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    stub_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE INDEX containers_stub ON containers (stub_id, heartbeat_at);

CREATE TABLE callbacks (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    leased_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'PENDING';
