/**
 * Pacing of control-plane work that runs on the forwarding thread (etcd's watch events and
 * listings, a reloaded peers file, applying peer changes): slices of at most {@link SLICE_MS},
 * each followed by a pause of {@link SLICE_PAUSE_MS} in which the thread forwards, or sleeps when
 * no packet comes. Without the pause (yielding with setImmediate) the thread never sleeps while
 * thousands of peers change, and on a host whose CPUs are busy (etcd sending the same change to
 * every host, the other daemons applying it) the scheduler then treats it as a CPU hog: a packet
 * that arrives waits for its next turn, tens of ms. A thread that sleeps half the time is run
 * again as soon as a packet wakes it. Costs: a large change takes about twice as long to apply.
 */

/** Longest slice of control-plane work before the forwarding loop gets a turn, ms. */
export const SLICE_MS = 1;
/** Pause after each slice, ms. */
export const SLICE_PAUSE_MS = 1;

/** Run `fn` after the pause (the next slice); clear with clearTimeout. */
export function nextSlice(fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, SLICE_PAUSE_MS);
}

/** The pause, awaited (the next slice). */
export function slicePause(): Promise<void> {
  return new Promise((r) => setTimeout(r, SLICE_PAUSE_MS));
}
