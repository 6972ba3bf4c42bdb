-- The console's lead search by prefix: e-mail, first name, last name and company, each read
-- as a byte-wise range (`~>=~`, `~<~`) of its lower-case index, whatever the collation.
CREATE INDEX leads_email_search ON leads (email text_pattern_ops);
CREATE INDEX leads_first_name_search ON leads (lower(first_name) text_pattern_ops);
CREATE INDEX leads_last_name_search ON leads (lower(last_name) text_pattern_ops);
CREATE INDEX leads_company_search ON leads (lower(company) text_pattern_ops);
