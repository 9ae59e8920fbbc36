-- eskit PostgreSQL schema, version 2: relay presence. Every running relay announces
-- itself per destination on each balancing tick, so that a relay holding no lease yet
-- still counts when the others compute their fair share of partitions.
CREATE TABLE IF NOT EXISTS {schema}.outbox_relays (
    destination text        NOT NULL,
    owner       text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (destination, owner)
);
