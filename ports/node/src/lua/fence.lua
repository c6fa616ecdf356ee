
-- The publish fence: nil if generation `gen` may publish an event of `kind` now, else
-- the refusal code (see the module docstring). `by_abort` is '1' for an abort's terminal.
-- `job` is the job's fields as `job_fields` reads them (a batch reads them once and
-- notes its own terminal in them).
local function job_fields(job_key)
  return redis.call('HMGET', job_key, 'generationId', 'status', 'terminalSeq', 'abortClaimed')
end
local function refusal_of(job, gen, kind, by_abort)
  if not job[1] then return -1 end
  if job[1] ~= gen then return -2 end
  if job[4] and by_abort ~= '1' then return -5 end
  if kind == 'chunk' then
    if job[2] ~= 'running' or job[3] then return -3 end
  elseif job[3] then
    return -4
  elseif job[2] ~= 'running' and by_abort ~= '1' then
    -- The job ended without a terminal on the log (a reader judged the producer lost):
    -- readers were told so, and a late producer's done or error must not follow.
    return -3
  end
  return nil
end
local function refusal(job_key, gen, kind, by_abort)
  return refusal_of(job_fields(job_key), gen, kind, by_abort)
end
