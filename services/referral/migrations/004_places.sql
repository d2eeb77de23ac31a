-- The directory's sites and permanences (reference data, from directory.updated): their names
-- on the statistics page, whose figures name them by id.
CREATE TABLE sites (
    id     text    PRIMARY KEY,
    name   text    NOT NULL,
    active boolean NOT NULL DEFAULT true
);

CREATE TABLE permanences (
    id       text    PRIMARY KEY,
    site     text    NOT NULL,
    mobile   boolean NOT NULL,
    weekdays text[]  NOT NULL,
    active   boolean NOT NULL DEFAULT true
);
