-- 0008_trace_attempts_cost: what a trace adds once a request may take several attempts and a
-- price table turns usage into money (issue 5): every attempt (deployment, outcome, status,
-- time) as a JSON array, and the cost in billionths of a US dollar (NULL when no price is
-- configured for the model that answered).
ALTER TABLE traces ADD COLUMN attempts TEXT;
ALTER TABLE traces ADD COLUMN cost_nanousd BIGINT;
