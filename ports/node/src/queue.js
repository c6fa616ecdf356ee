// An unbounded single-consumer queue with an end: what a trio memory channel is to impl/.
// The actor pushes a subscriber's events; the client iterates them.

/** @template T */
export class EventQueue {
  constructor() {
    /** @type {T[]} */
    this._items = [];
    /** @type {((result: IteratorResult<T>) => void) | null} */
    this._waiter = null;
    /** The producer ended the queue: the consumer gets what is queued, then the end. */
    this.ended = false;
    /** The consumer left: nothing more is accepted. */
    this.abandoned = false;
  }

  /** Queue `item`; false if the consumer has left.
   * @param {T} item */
  push(item) {
    if (this.abandoned) return false;
    if (this.ended) throw new Error("push on an ended queue");
    const waiter = this._waiter;
    if (waiter !== null) {
      this._waiter = null;
      waiter({ value: item, done: false });
    } else {
      this._items.push(item);
    }
    return true;
  }

  /** The producer's end: no more items. */
  end() {
    if (this.ended) return;
    this.ended = true;
    const waiter = this._waiter;
    if (waiter !== null && this._items.length === 0) {
      this._waiter = null;
      waiter({ value: undefined, done: true });
    }
  }

  /** The consumer's end: drop what is queued and refuse the rest; a pending `next` ends. */
  abandon() {
    this.abandoned = true;
    this._items = [];
    this.end();
    const waiter = this._waiter;
    if (waiter !== null) {
      this._waiter = null;
      waiter({ value: undefined, done: true });
    }
  }

  /** @returns {Promise<IteratorResult<T>>} */
  next() {
    const item = this._items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this._waiter !== null) throw new Error("only one consumer may wait on a queue");
    return new Promise((resolve) => {
      this._waiter = resolve;
    });
  }
}
