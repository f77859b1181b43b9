-- Version 1: every table as it was when versioning began (a file from then is adopted as this).

-- calls: one row per call, written as it goes (voicebot.storage.callstore)
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    gateway TEXT, gateway_call_id TEXT, stream_id TEXT,
    caller TEXT,  -- the caller's keyed pseudonym (voicebot.storage.sealed)
    language TEXT, started_at REAL, ended_at REAL,
    disclosure_text TEXT, disclosure_started_at REAL, disclosure_played_at REAL,
    disclosure_confirmed_by TEXT, outcome TEXT, handoff_reason TEXT, handoff_target TEXT,
    summary TEXT,
    caller_sealed TEXT DEFAULT ''  -- the number, encrypted
);
CREATE INDEX IF NOT EXISTS calls_gateway_id ON calls (gateway_call_id);
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS call_events (
    call_id TEXT NOT NULL REFERENCES calls (call_id),
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events (call_id, seq);
-- one event of a kind per call and instant: a write the journal repeats is stored once
CREATE UNIQUE INDEX IF NOT EXISTS call_events_once ON call_events (call_id, kind, at);

-- the staff desk (voicebot.storage.desk)
CREATE TABLE IF NOT EXISTS desk_transfers (
    call_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    caller TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    sentiment REAL,
    decided_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'waiting',
    claimed_by TEXT NOT NULL DEFAULT '',
    claimed_at REAL,
    disposition TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS desk_transfers_status ON desk_transfers (status, decided_at);
CREATE TABLE IF NOT EXISTS desk_feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    at REAL NOT NULL,
    "user" TEXT NOT NULL,
    kind TEXT NOT NULL,
    utterance INTEGER,  -- index into the call's transcript, when about one utterance
    heard TEXT NOT NULL DEFAULT '',  -- what the bot recognised there
    correction TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS desk_webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);

-- staff accounts, credentials, audit (voicebot.storage.staff)
CREATE TABLE IF NOT EXISTS staff_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS staff_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    "user" TEXT NOT NULL REFERENCES staff_users (name),
    kind TEXT NOT NULL,  -- api | session
    label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL  -- NULL = until revoked
);
CREATE TABLE IF NOT EXISTS staff_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    "user" TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS staff_audit_call ON staff_audit (call_id);

-- callers who opted out of the assistant, by pseudonym (voicebot.storage.optout)
CREATE TABLE IF NOT EXISTS caller_opt_outs (
    caller TEXT PRIMARY KEY,
    since REAL NOT NULL,
    call_id TEXT NOT NULL DEFAULT ''  -- the call in which they opted out ('' = by an admin)
);

-- caller-group labels for the reports (voicebot.ops.tags)
CREATE TABLE IF NOT EXISTS call_tags (
    call_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (call_id, key)
);
-- a call's labels go with it, whoever deletes it (a caller's erasure, retention)
CREATE TRIGGER IF NOT EXISTS call_tags_follow_calls AFTER DELETE ON calls
BEGIN DELETE FROM call_tags WHERE call_id = OLD.call_id; END;
