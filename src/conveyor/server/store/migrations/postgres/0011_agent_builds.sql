-- Each agent's build state of the images of the stubs it runs (DESIGN A9), a JSON object by
-- stub id ({"state": "building" | "ready" | "failed", "message"?}), renewed with its heartbeat,
-- for GET /v2/taskqueue/{name}.
ALTER TABLE agents ADD COLUMN builds TEXT NOT NULL DEFAULT '{}';
