-- Issue #16, point 10: what the funders' figures need of a contact (time spent with the
-- person, walk-in or appointment, the partner it was for at a shared permanence), from
-- intake.recorded (contacts recorded before carry none of it), and the directory's priority
-- neighbourhood (QPV) code of each site.
ALTER TABLE intakes ADD COLUMN duration_minutes integer;
ALTER TABLE intakes ADD COLUMN arrival text;
ALTER TABLE intakes ADD COLUMN for_org text;
ALTER TABLE sites ADD COLUMN qpv text;
