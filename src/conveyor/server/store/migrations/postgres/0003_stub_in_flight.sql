-- Each stub keeps the number of its tasks in flight (PENDING, RETRY, RUNNING), so checking
-- max_pending_tasks on enqueue reads the stub row it locks anyway instead of counting a deep
-- queue. Enqueue adds what it inserts; this trigger takes away what leaves (a terminal
-- status, a deleted row). Claims (PENDING -> RUNNING) do not fire it.
ALTER TABLE stubs ADD COLUMN in_flight BIGINT NOT NULL DEFAULT 0;

UPDATE stubs SET in_flight = (
    SELECT COUNT(*) FROM tasks
    WHERE tasks.stub_id = stubs.id AND tasks.status IN ('PENDING', 'RETRY', 'RUNNING')
);

CREATE FUNCTION conveyor_track_in_flight() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE stubs SET in_flight = in_flight - 1 WHERE id = OLD.stub_id;
    ELSIF NEW.status IN ('PENDING', 'RETRY', 'RUNNING') THEN
        UPDATE stubs SET in_flight = in_flight + 1 WHERE id = NEW.stub_id;
    ELSE
        UPDATE stubs SET in_flight = in_flight - 1 WHERE id = NEW.stub_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_in_flight_status AFTER UPDATE OF status ON tasks FOR EACH ROW
WHEN ((OLD.status IN ('PENDING', 'RETRY', 'RUNNING'))
      IS DISTINCT FROM (NEW.status IN ('PENDING', 'RETRY', 'RUNNING')))
EXECUTE FUNCTION conveyor_track_in_flight();

CREATE TRIGGER tasks_in_flight_delete AFTER DELETE ON tasks FOR EACH ROW
WHEN (OLD.status IN ('PENDING', 'RETRY', 'RUNNING'))
EXECUTE FUNCTION conveyor_track_in_flight();
