ALTER TABLE intakes ADD COLUMN permanence text, ADD COLUMN gender text;
