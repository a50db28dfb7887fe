-- Events a projection skipped, with the error it raised; one letter per projection
-- and position (a redelivered event overwrites its letter).
CREATE TABLE __SCHEMA__.dead_letters (
    projection text        NOT NULL,
    position   bigint      NOT NULL CHECK (position >= 0),
    event_id   uuid        NOT NULL,
    stream_id  text        NOT NULL,
    event_type text        NOT NULL,
    error      text        NOT NULL,
    failed_at  timestamptz NOT NULL,
    PRIMARY KEY (projection, position)
);
