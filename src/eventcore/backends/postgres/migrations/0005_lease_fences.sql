-- Fencing tokens: ``fence`` grows by one each time a lease changes hands (a
-- renewal by the same holder keeps it); a fenced write commits only while it is
-- unchanged. Released leases keep their row (holder '' and expired), so that
-- tokens never repeat.
ALTER TABLE __SCHEMA__.leases ADD COLUMN fence bigint NOT NULL DEFAULT 0;
