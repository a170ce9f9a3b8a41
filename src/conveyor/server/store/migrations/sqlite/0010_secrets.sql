-- Workspace secrets (DESIGN A9): only their ciphertext (Fernet, a text token); the key is
-- never in the store (the file secret.key beside it, or CONVEYOR_SECRET_KEY).
CREATE TABLE secrets (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
) WITHOUT ROWID;
