-- The console's lead search by prefix: e-mail (stored lower-case, so its unique index serves),
-- first name, last name and company, each read as a range of its lower-case index.
CREATE INDEX leads_first_name_search ON leads (lower(first_name));
CREATE INDEX leads_last_name_search ON leads (lower(last_name));
CREATE INDEX leads_company_search ON leads (lower(company));
