-- Version 3: the caller's answer to the recording question (privacy) and the
-- post-call satisfaction survey (operations).
ALTER TABLE calls ADD COLUMN IF NOT EXISTS recording_consent text NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN IF NOT EXISTS survey text NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN IF NOT EXISTS csat integer;
