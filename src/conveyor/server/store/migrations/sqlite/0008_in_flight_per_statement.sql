-- PostgreSQL's 0008 keeps the in-flight count per statement instead of per row. SQLite has
-- no statement-level triggers, and its row triggers (0003) run inside the writing
-- statement with no round trip, so they stay; this number is kept in step with PostgreSQL.
SELECT 1;
