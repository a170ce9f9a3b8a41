-- Dashboard sessions (DESIGN A13): the sign-in cookie holds a random session id, never an API
-- token. Only hashes are kept: the session id's and the token's it was made from, so revoking
-- a token (`conveyor token revoke`) ends every session made from it.
CREATE TABLE dashboard_sessions (
    hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    token_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX dashboard_sessions_by_token ON dashboard_sessions (token_hash);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
