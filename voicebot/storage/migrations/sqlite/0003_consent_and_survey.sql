-- Version 3: the caller's answer to the recording question (privacy) and the
-- post-call satisfaction survey (operations).
ALTER TABLE calls ADD COLUMN recording_consent TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN survey TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN csat INTEGER;
