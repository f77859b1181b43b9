-- Version 2: retention, reports and the desk's lists select calls by start time.
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
