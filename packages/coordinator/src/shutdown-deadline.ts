import { CleanupTimeoutError } from '@mapscale/protocol';

/**
 * What the daemon is given on top of its own bounds to answer `shutdown`: the daemon gives a job a
 * forced shutdown left running `cleanupTimeoutMs`, then cleanup() as long again, then terminates
 * the thread; this covers terminating it and the answer's trip.
 */
const ANSWER_MARGIN_MS = 5_000;

/** How long a coordinator waits for `shutdown-done` before it gives the daemon up: it must never hang on one. */
export function shutdownAnswerDeadlineMs(cleanupTimeoutMs: number): number {
  return 2 * cleanupTimeoutMs + ANSWER_MARGIN_MS;
}

/**
 * `answer`, or undefined once `ms` have passed. A later rejection of `answer` (its connection
 * closing once given up) is expected then, and handled.
 */
export async function answerWithin<T>(answer: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const overdue = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([answer, overdue]);
  } finally {
    clearTimeout(timer);
    answer.catch(() => {});
  }
}

/** A shutdown's failures when the daemon did not answer: every instance's cleanup() is unconfirmed. */
export function unansweredCleanups(slots: number, waitedMs: number): { slot: number; error: Error }[] {
  return Array.from({ length: slots }, (_, slot) => ({ slot, error: new CleanupTimeoutError(waitedMs, 'daemon') }));
}
