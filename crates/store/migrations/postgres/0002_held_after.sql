-- The last offset of a stream delivered live before it was paused: events
-- after it are held, and released when the stream resumes, also after a
-- restart in between.
ALTER TABLE streams ADD COLUMN held_after BIGINT NOT NULL DEFAULT 0;
