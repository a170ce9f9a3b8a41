-- task d8a85a86-85c8-41e9-a199-5b20c70393d9 RUNNING
-- task b6d8bda0-8294-4356-b5fb-ea06d22a0646 COMPLETE
-- task 02643e06-b0a4-4563-aa0e-df3c6e67da2f RETRY
-- task 4948d4dc-3707-4975-970d-738edd06626d FAILED
-- task faab182b-8ff8-4204-a091-eeb087d14555 TIMEOUT
-- task f05aca45-9dd7-480e-a58b-29099f3140f9 EXPIRED
-- task e4ee7368-876c-4d04-8121-a8af5491288f PENDING
-- task d67d74cc-5882-4bf2-a56d-9094ecd2b429 CANCELLED
BEGIN TRANSACTION;
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
INSERT INTO "callbacks" VALUES('3858e8b3-65e2-47c2-8c21-fee1c8e86d5f','b6d8bda0-8294-4356-b5fb-ea06d22a0646','77c77271-f499-4046-9f8b-9fd984c4acac','http://receiver.test/hook','COMPLETE',X'7B2264617461223A7B226F6B223A20317D7D','PENDING',0,1760000003000000,1760000003000000,NULL,NULL,NULL);
INSERT INTO "callbacks" VALUES('2877b71a-8825-4680-80a2-b53a484b9317','4948d4dc-3707-4975-970d-738edd06626d','77c77271-f499-4046-9f8b-9fd984c4acac','http://receiver.test/hook','FAILED',X'7B2264617461223A7B7D7D','PENDING',0,1760000003000000,1760000003000000,NULL,NULL,NULL);
INSERT INTO "callbacks" VALUES('9c649e68-2936-437e-a0f2-a3e4795cf8eb','faab182b-8ff8-4204-a091-eeb087d14555','77c77271-f499-4046-9f8b-9fd984c4acac','http://receiver.test/hook','TIMEOUT',X'7B2264617461223A7B7D7D','PENDING',0,1760000003000000,1760000003000000,NULL,NULL,NULL);
INSERT INTO "callbacks" VALUES('571769a8-76f6-43a6-8765-dd76ca7abfbf','f05aca45-9dd7-480e-a58b-29099f3140f9','77c77271-f499-4046-9f8b-9fd984c4acac','http://receiver.test/hook','EXPIRED',X'7B2264617461223A7B7D7D','PENDING',0,1760000061000000,1760000061000000,NULL,NULL,NULL);
CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    stub_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE idempotency_keys (
    workspace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
) WITHOUT ROWID;
CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace_id, sha256)
);
INSERT INTO "objects" VALUES(1,'77c77271-f499-4046-9f8b-9fd984c4acac','8739c76e681f900923b900c9df0ef75cf421d39cabb54650c4b9ad19b6a76d85',X'504B0506000000000000000000000000000000000000',1795978554464925);
CREATE TABLE outputs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO "outputs" VALUES('d7a3206d-7929-44b9-8cb4-6ab9ab12fb77','b6d8bda0-8294-4356-b5fb-ea06d22a0646','out.txt',4,X'6B657074',1760000003000000);
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
INSERT INTO "schema_version" VALUES(1,'initial',1795978554461323);
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
INSERT INTO "stubs" VALUES('12b13b14-7f3b-4d74-9fa0-263323e7b9de','77c77271-f499-4046-9f8b-9fd984c4acac','old','taskqueue/deployment',1,'{"authorized":true,"autoscaler":{"max_containers":1,"min_containers":0,"tasks_per_container":1},"callback_url":null,"code_path":null,"cpu":1.0,"env":{},"handler":"app.py:handler","keep_warm_seconds":10,"max_pending_tasks":100,"max_retries":3,"memory":128,"name":"old","retry_backoff":0,"retry_for":[],"timeout":3600,"ttl":60,"workers":1}',1,1,1795978554464925,1795978554464925);
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
INSERT INTO "tasks" VALUES(1,'d8a85a86-85c8-41e9-a199-5b20c70393d9','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','RUNNING','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',1,1,3,3600.0,60.0,0.0,'taskqueue-old-00000001',1760000000000000,1760000001000000,NULL,1760000001000000,1760000000000000,NULL,1761000001000000,NULL,NULL);
INSERT INTO "tasks" VALUES(2,'b6d8bda0-8294-4356-b5fb-ea06d22a0646','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','COMPLETE','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',1,1,3,3600.0,60.0,0.0,'taskqueue-old-00000001',1760000000000000,1760000001000000,1760000003000000,1760000003000000,1760000000000000,NULL,NULL,'{"ok": 1}',NULL);
INSERT INTO "tasks" VALUES(3,'02643e06-b0a4-4563-aa0e-df3c6e67da2f','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','RETRY','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',1,1,3,3600.0,60.0,0.0,'taskqueue-old-00000001',1760000000000000,1760000001000000,NULL,1760000003000000,1760000003000000,1760000063000000,NULL,NULL,'{"type": "OSError", "message": "again"}');
INSERT INTO "tasks" VALUES(4,'4948d4dc-3707-4975-970d-738edd06626d','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','FAILED','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',1,1,3,3600.0,60.0,0.0,'taskqueue-old-00000001',1760000000000000,1760000001000000,1760000003000000,1760000003000000,1760000000000000,NULL,NULL,NULL,'{"type": "ValueError", "message": "bad"}');
INSERT INTO "tasks" VALUES(5,'faab182b-8ff8-4204-a091-eeb087d14555','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','TIMEOUT','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',1,1,3,3600.0,60.0,0.0,'taskqueue-old-00000001',1760000000000000,1760000001000000,1760000003000000,1760000003000000,1760000000000000,NULL,NULL,NULL,'{"type": "TimeoutError", "message": "slow"}');
INSERT INTO "tasks" VALUES(6,'f05aca45-9dd7-480e-a58b-29099f3140f9','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','EXPIRED','{"args":[1],"kwargs":{"k":"v"}}','http://receiver.test/hook',0,0,3,3600.0,60.0,0.0,'',1760000000000000,NULL,1760000061000000,1760000061000000,1760000000000000,NULL,NULL,NULL,NULL);
INSERT INTO "tasks" VALUES(7,'e4ee7368-876c-4d04-8121-a8af5491288f','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','PENDING','{"args":[1],"kwargs":{"k":"v"}}',NULL,0,0,3,3600.0,60.0,0.0,'',1760000000000000,NULL,NULL,1760000000000000,1760000000000000,1760000060000000,NULL,NULL,NULL);
INSERT INTO "tasks" VALUES(8,'d67d74cc-5882-4bf2-a56d-9094ecd2b429','77c77271-f499-4046-9f8b-9fd984c4acac','12b13b14-7f3b-4d74-9fa0-263323e7b9de','CANCELLED','{"args":[1],"kwargs":{"k":"v"}}',NULL,0,0,3,3600.0,60.0,0.0,'',1760000000000000,NULL,1760000002000000,1760000002000000,1760000000000000,NULL,NULL,NULL,NULL);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    created_at INTEGER NOT NULL
);
INSERT INTO "tokens" VALUES('b5ed66b9ea26d607947453c8e3c3b282d851d702a090ec0b20004a23568e4ea6','77c77271-f499-4046-9f8b-9fd984c4acac',1795978554464442);
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    signing_secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO "workspaces" VALUES('77c77271-f499-4046-9f8b-9fd984c4acac','upgrade','de65ae0ce8d7b7ca8484120a9f871a5cac629bb3ab65f1723ab432e48ea18944',1795978554464198);
CREATE INDEX tasks_waiting ON tasks (stub_id, seq) WHERE status IN ('PENDING','RETRY');
CREATE INDEX tasks_workspace ON tasks (workspace_id, seq);
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX tasks_stub_status ON tasks (stub_id, status);
CREATE INDEX outputs_task ON outputs (task_id);
CREATE INDEX containers_stub ON containers (stub_id, heartbeat_at);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'PENDING';
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('objects',1);
INSERT INTO "sqlite_sequence" VALUES('tasks',8);
COMMIT;
