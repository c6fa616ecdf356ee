// Time. Deadlines are seconds on the machine's monotonic clock (CLOCK_MONOTONIC, what
// Python's time.monotonic() reads, so agents in either language share one time line);
// wall-clock milliseconds are for what the job hash stores.

/** Seconds on CLOCK_MONOTONIC. */
export const monotonic = () => Number(process.hrtime.bigint()) / 1e9;
