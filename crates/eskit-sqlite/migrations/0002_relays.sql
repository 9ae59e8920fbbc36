-- eskit SQLite schema, version 2: relay presence.
-- Each relay announces itself per destination every balancing tick, so a relay that
-- holds no lease yet still counts when the others compute their fair share.
CREATE TABLE IF NOT EXISTS outbox_relays (
    destination TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (destination, owner)
);
