// A promise with its resolve in hand: the one-shot answer a caller waits for, and the
// "it happened" flag of an event (what trio.Event is to impl/).

/** @template [T=void] */
export class Deferred {
  constructor() {
    this.settled = false;
    /** @type {(value: T) => void} */
    this._resolve = () => {};
    /** @type {(error: unknown) => void} */
    this._reject = () => {};
    /** @type {Promise<T>} */
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // A failure nobody waits for is not an unhandled rejection: callers await `promise`.
    this.promise.catch(() => {});
  }

  /** @param {T} value */
  resolve(value) {
    if (this.settled) return;
    this.settled = true;
    this._resolve(value);
  }

  /** @param {unknown} error */
  reject(error) {
    if (this.settled) return;
    this.settled = true;
    this._reject(error);
  }
}
