-- Operator tokens (DESIGN A13): they read /metrics of every workspace and nothing else. A
-- table apart from `tokens`, so no operator token can authenticate a workspace's API routes.
CREATE TABLE operator_tokens (
    hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
