-- Each stub keeps the number of its tasks in flight (PENDING, RETRY, RUNNING), so checking
-- max_pending_tasks on enqueue reads one row instead of counting a deep queue. Enqueue adds
-- what it inserts; these triggers take away what leaves (a terminal status, a deleted row).
ALTER TABLE stubs ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;

UPDATE stubs SET in_flight = (
    SELECT COUNT(*) FROM tasks
    WHERE tasks.stub_id = stubs.id AND tasks.status IN ('PENDING', 'RETRY', 'RUNNING')
);

CREATE TRIGGER tasks_leave_flight AFTER UPDATE OF status ON tasks
WHEN OLD.status IN ('PENDING', 'RETRY', 'RUNNING')
    AND NEW.status NOT IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight - 1 WHERE id = NEW.stub_id;
END;

CREATE TRIGGER tasks_enter_flight AFTER UPDATE OF status ON tasks
WHEN OLD.status NOT IN ('PENDING', 'RETRY', 'RUNNING')
    AND NEW.status IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight + 1 WHERE id = NEW.stub_id;
END;

CREATE TRIGGER tasks_delete_in_flight AFTER DELETE ON tasks
WHEN OLD.status IN ('PENDING', 'RETRY', 'RUNNING')
BEGIN
    UPDATE stubs SET in_flight = in_flight - 1 WHERE id = OLD.stub_id;
END;
