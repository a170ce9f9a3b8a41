-- Workspace secrets (DESIGN A9): only their ciphertext (Fernet, a text token); the key is
-- never in the store (CONVEYOR_SECRET_KEY of each server and worker).
CREATE TABLE secrets (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
