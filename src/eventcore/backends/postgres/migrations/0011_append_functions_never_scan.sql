-- The append functions never scan the streams or events tables. The statements
-- that find a batch's stream rows by `stream_id = ANY (array)` (the lock, and the
-- version update joined to the new counts) were left to the planner, which
-- prices a sequential scan of a small table with a filter of many ids below as
-- many index probes: on 6,000 streams a batch naming 128 of them was scanned, and
-- the filter compares every row with every id, a cost that grows with the store.
-- Under group commit, batches that big come and go with load, so throughput
-- swung between runs. With sequential scans off inside these functions the
-- planner takes the primary key's index whatever it estimates; nothing in them
-- needs a scan (everything else they read comes from their arrays, or from the
-- events and log_head tables by key).
--
-- Not the COPY path's functions (append_staged, append_independent_staged): they
-- read the staging table, which has no index to take instead, and with scans
-- priced out the planner joined it so badly that a 1,000-event append took 0.8 s
-- instead of 10 ms. The COPY path (opt-in, for big batches) keeps the planner's
-- choice.
--
-- A later migration that replaces one of these functions (CREATE OR REPLACE
-- drops this setting) must set it again.

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = '__SCHEMA__'::regnamespace
           AND p.proname IN ('append_batch', 'append_to_stream', 'append_one',
                             'append_independent')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET enable_seqscan = off', f);
    END LOOP;
END
$$;
