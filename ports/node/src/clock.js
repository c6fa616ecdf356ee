// Time. Deadlines are seconds on the machine's monotonic clock (CLOCK_MONOTONIC, what
// Python's time.monotonic() reads, so agents in either language share one time line);
// wall-clock milliseconds are for what the job hash stores.
//
// The replica's timers may also run on the harness clock (protocol 2, docs/port-protocol.md):
// the simulation moves the clock ahead with `advanceClock` instead of letting real time pass,
// and every timer due by then fires at once. The clock is the process's, as the monotonic
// clock is: one process hosts one replica, and a process that is never told to advance (a
// real deployment, or a plan run against real Redis) runs on the machine's clock alone.

/** Seconds on CLOCK_MONOTONIC, whatever the harness clock says: the protocol's times. */
export const machineMonotonic = () => Number(process.hrtime.bigint()) / 1e9;

/** Seconds the harness moved this process's clock ahead of the machine's. */
let aheadS = 0;

/** Seconds on the replica's clock: the machine's monotonic clock plus the harness's jumps. */
export const monotonic = () => machineMonotonic() + aheadS;

/** Wall-clock milliseconds plus the harness's jumps: what the job hash stores and a silent
 * reader's producer timeout compares (a jump past it makes a turn's producer count as lost). */
export const wallMs = () => Date.now() + Math.round(aheadS * 1000);

/**
 * A timer at a deadline on the replica's clock.
 * @typedef {object} ClockTimer
 * @property {() => void} cancel
 */

/** @type {Set<{ deadline: number, fire: () => void, handle: NodeJS.Timeout }>} */
const pending = new Set();

/**
 * Call `fire` once the replica's clock reaches `deadline`: by a real timer, or at once when
 * the harness moves the clock past it.
 * @param {number} deadline seconds on `monotonic()`
 * @param {() => void} fire
 * @returns {ClockTimer}
 */
export function atDeadline(deadline, fire) {
  // Rounded up, so the timer never fires before the deadline it is for.
  const delayMs = Math.max(0, Math.ceil((deadline - monotonic()) * 1000) + 1);
  const timer = {
    deadline,
    fire,
    handle: setTimeout(() => {
      pending.delete(timer);
      fire();
    }, delayMs),
  };
  pending.add(timer);
  return {
    cancel() {
      clearTimeout(timer.handle);
      pending.delete(timer);
    },
  };
}

/**
 * The harness clock: move the replica's clock `seconds` ahead and fire every timer now due,
 * earliest first.
 * @param {number} seconds
 */
export function advanceClock(seconds) {
  if (!(seconds >= 0)) throw new RangeError(`the harness clock never goes back (${seconds} s)`);
  aheadS += seconds;
  const now = monotonic();
  const due = [...pending].filter((timer) => timer.deadline <= now).sort((a, b) => a.deadline - b.deadline);
  for (const timer of due) {
    clearTimeout(timer.handle);
    pending.delete(timer);
    timer.fire();
  }
}
