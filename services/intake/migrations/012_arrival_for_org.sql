-- Issue #16, point 9: whether the person came without an appointment or with one, and, at a
-- permanence shared by several partners, the partner the contact was for.
ALTER TABLE intakes ADD COLUMN arrival text;
ALTER TABLE intakes ADD COLUMN for_org text;
