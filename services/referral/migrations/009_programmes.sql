-- Issue #16, point 11: the programmes sharing the instance (from directory.updated), so that
-- a funder reads the figures of the programmes it funds and no other's; and the organisation
-- that received each signal (signals received before carry none: they count only in the
-- figures of the whole instance).
CREATE TABLE programmes (
    id            text   PRIMARY KEY,
    name          text   NOT NULL,
    organisations text[] NOT NULL,
    sites         text[] NOT NULL,
    funders       text[] NOT NULL,
    coordinators  text[] NOT NULL
);
ALTER TABLE signals ADD COLUMN org text;
CREATE INDEX intakes_org_contacted ON intakes (org, contacted_at);
