-- Snapshots of folded command state: the state as encoded by the command, and the
-- version of every stream it was folded from (parallel arrays).
CREATE TABLE __SCHEMA__.snapshots (
    key      text PRIMARY KEY,
    streams  text[] NOT NULL,
    versions bigint[] NOT NULL,
    state    bytea NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
