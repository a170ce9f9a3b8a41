-- Listing tasks filtered by status (API, dashboard) walks this index instead of every task
-- of the workspace: a rare status stays fast with a million tasks stored.
CREATE INDEX tasks_workspace_status ON tasks (workspace_id, status, seq);
