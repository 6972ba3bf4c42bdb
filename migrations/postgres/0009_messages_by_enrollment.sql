-- A lead's messages are found through its enrollments (every message belongs to one, and
-- `enrollments_lead` and the messages' unique (enrollment_id, seq) index lead there), not
-- through an index of their own. That index took each new message in the middle of its
-- b-tree (by lead), where the others take it at the end or next to the enrollment's earlier
-- messages: 1% of the instructions of a campaign step (callgrind, BENCHMARKS.md). Frequency
-- caps, the lead timeline and erasure read a lead's few dozen messages this way.
DROP INDEX messages_lead_created;
