-- A lead's messages are found through its enrollments (every message belongs to one, and
-- `enrollments_lead` and the messages' unique (enrollment_id, seq) index lead there), not
-- through an index of their own. That index took each new message in the middle of the
-- b-tree (by lead), where the two others take it at the end or next to the enrollment's
-- earlier messages: about 1.5 µs a message on this machine, a twentieth of a campaign step.
-- Frequency caps, the lead timeline and erasure read a lead's few dozen messages this way.
DROP INDEX messages_lead_created;
