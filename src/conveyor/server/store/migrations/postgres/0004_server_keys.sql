-- The keys of signed output links (DESIGN A4), in the store so that every gateway on it signs
-- and verifies alike. The newest generation signs; the one before it still verifies links
-- made before a rotation (``conveyor signing-key rotate``). Older generations are dropped.
CREATE TABLE server_keys (
    generation BIGINT PRIMARY KEY CHECK (generation >= 1),
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
