-- The in-flight count (0003) kept per statement instead of per row: a batch of N finishes
-- fired the row trigger N times, one UPDATE of the stub row each. These statement-level
-- triggers look at the statement's transition tables and adjust each stub once, by the
-- difference between the rows that entered flight and those that left it; a claim
-- (PENDING -> RUNNING) or a lease renewal changes nothing and writes no stub row. Enqueue
-- still adds what it inserts itself (it reads and locks the stub row anyway).
DROP TRIGGER tasks_in_flight_status ON tasks;
DROP TRIGGER tasks_in_flight_delete ON tasks;
DROP FUNCTION conveyor_track_in_flight();

CREATE FUNCTION conveyor_in_flight_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Stub rows locked in id order, so two batches over the same stubs cannot deadlock.
    WITH delta AS (
        SELECT stub_id, SUM(d) AS d FROM (
            SELECT stub_id, -1 AS d FROM old_rows
            WHERE status IN ('PENDING', 'RETRY', 'RUNNING')
            UNION ALL
            SELECT stub_id, 1 AS d FROM new_rows
            WHERE status IN ('PENDING', 'RETRY', 'RUNNING')
        ) AS moves GROUP BY stub_id HAVING SUM(d) <> 0
    ), locked AS (
        SELECT stubs.id, delta.d FROM stubs JOIN delta ON delta.stub_id = stubs.id
        ORDER BY stubs.id FOR UPDATE OF stubs
    )
    UPDATE stubs SET in_flight = stubs.in_flight + locked.d FROM locked
    WHERE stubs.id = locked.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION conveyor_in_flight_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH delta AS (
        SELECT stub_id, COUNT(*) AS d FROM old_rows
        WHERE status IN ('PENDING', 'RETRY', 'RUNNING') GROUP BY stub_id
    ), locked AS (
        SELECT stubs.id, delta.d FROM stubs JOIN delta ON delta.stub_id = stubs.id
        ORDER BY stubs.id FOR UPDATE OF stubs
    )
    UPDATE stubs SET in_flight = stubs.in_flight - locked.d FROM locked
    WHERE stubs.id = locked.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_in_flight_update AFTER UPDATE ON tasks
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION conveyor_in_flight_update();

CREATE TRIGGER tasks_in_flight_delete AFTER DELETE ON tasks
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION conveyor_in_flight_delete();
