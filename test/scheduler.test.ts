import { expect } from 'chai';
import type { SerializedError } from '@mapscale/protocol';
import { MapRun, Scheduler, type Batch, type ResultOutcome, type SchedulerTuning, type SlotLoss, type RunView } from '../packages/coordinator/dist/scheduler.js';
import { ArrayResults } from '../packages/coordinator/dist/result-stores.js';
import { prng } from './helpers/prng.js';
import { answer, jobsOf, randomTuning, remoteError, scheduler, seeded, size, work } from './helpers/scheduler.js';


/** Every job the run has read so far. */
function allJobs(run: MapRun): unknown[] {
  return run.jobs(0, run.fetched);
}

/** The results of a run kept in job order (the default store of a `map`). */
function valuesOf(run: MapRun): unknown[] {
  expect(run.results).to.be.instanceOf(ArrayResults);
  return (run.results as ArrayResults).values;
}

/** A loss that blames nobody: every unanswered job simply goes back to its run. */
const RETIRED: SlotLoss = { kind: 'retired' };

const NOTHING: ResultOutcome = { completed: [], failed: [], cancelled: [] };

function slotsOf(batches: readonly Batch[]): number[] {
  return batches.map((b) => b.slotId);
}

function countBy<T>(items: readonly T[]): Map<T, number> {
  const counts = new Map<T, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}

/**
 * Dispatches and answers everything until no batch is left, answering in the order `pick` chooses.
 * `inFlight` holds batches the test dispatched itself and has not answered in full yet.
 */
function drain(s: Scheduler, pick: (inFlight: Batch[]) => Batch = (b) => b[0]!, inFlight: Batch[] = []): { dispatched: Batch[]; completed: RunView[] } {
  const dispatched: Batch[] = [];
  const completed: RunView[] = [];
  for (let guard = 0; guard < 100_000; guard++) {
    const fresh = s.nextDispatches();
    dispatched.push(...fresh);
    inFlight.push(...fresh);
    if (inFlight.length === 0) return { dispatched, completed };
    const batch = pick(inFlight);
    inFlight = inFlight.filter((b) => b !== batch);
    completed.push(...answer(s, batch).completed);
  }
  throw new Error('drain did not finish');
}

describe('Scheduler', () => {
  describe('dispatch', () => {
    it('succeeds an empty run at once and never dispatches it', () => {
      const s = scheduler({}, [1, 2]);
      const run = new MapRun(1, []);
      expect(s.addRun(run)).to.deep.equal({ completed: [run], failed: [], cancelled: [] });
      expect(run.status).to.equal('succeeded');
      expect(valuesOf(run)).to.deep.equal([]);
      expect(s.activeRuns).to.have.length(0);
      expect(s.nextDispatches()).to.deep.equal([]);
    });

    it('dispatches nothing while there is no slot, and starts once one is added', () => {
      const s = new Scheduler({ chunkSize: 5 });
      const run = new MapRun(1, jobsOf(20));
      s.addRun(run);
      expect(s.nextDispatches()).to.deep.equal([]);
      s.addSlot(1);
      expect(s.slotCount).to.equal(1);
      expect(s.nextDispatches()).to.have.length(2);
    });

    it('dispatches nothing when there is no run', () => {
      expect(scheduler({}, [1, 2, 3]).nextDispatches()).to.deep.equal([]);
    });

    it('dispatches every job exactly once, in contiguous ranges, and results land in job order', () => {
      for (const pickLast of [false, true]) {
        const s = scheduler({ chunkSize: 7 }, [1, 2, 3]);
        const run = new MapRun(1, jobsOf(100));
        s.addRun(run);
        // Answering the newest batch first makes results arrive out of job order.
        const { dispatched, completed } = drain(s, pickLast ? (b) => b[b.length - 1]! : undefined);
        const covered = dispatched.flatMap((b) => {
          expect(b.start).to.be.below(b.end);
          expect(b.end).to.be.at.most(run.total);
          return Array.from({ length: size(b) }, (_, i) => b.start + i);
        });
        expect([...covered].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i));
        expect(completed).to.deep.equal([run]);
        expect(run.status).to.equal('succeeded');
        expect(run.done).to.equal(100);
        expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
        expect(s.activeRuns).to.have.length(0);
      }
    });

    it('gives every idle slot work in the first round', () => {
      const s = scheduler({ chunkSize: 10 }, [1, 2, 3, 4]);
      s.addRun(new MapRun(1, jobsOf(1000)));
      const batches = s.nextDispatches();
      expect(new Set(slotsOf(batches.slice(0, 4)))).to.deep.equal(new Set([1, 2, 3, 4]));
    });

    it('spreads as many batches as there are slots one to each slot', () => {
      const s = scheduler({ chunkSize: 10 }, [1, 2, 3, 4]);
      s.addRun(new MapRun(1, jobsOf(40)));
      const batches = s.nextDispatches();
      expect(batches).to.have.length(4);
      expect(new Set(slotsOf(batches))).to.deep.equal(new Set([1, 2, 3, 4]));
    });

    it('sends a lone batch to an idle slot rather than to a busy one', () => {
      const s = scheduler({ chunkSize: 10 }, [1, 2, 3]);
      s.addRun(new MapRun(1, jobsOf(10)));
      const [first] = s.nextDispatches();
      s.addRun(new MapRun(2, jobsOf(10)));
      const [second] = s.nextDispatches();
      expect(second!.slotId).to.not.equal(first!.slotId);
      s.addRun(new MapRun(3, jobsOf(10)));
      const [third] = s.nextDispatches();
      expect(new Set([first!.slotId, second!.slotId, third!.slotId])).to.deep.equal(new Set([1, 2, 3]));
    });

    it('sends the next batch to the slot that just freed up', () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 2 }, [1, 2, 3]);
      s.addRun(new MapRun(1, jobsOf(1000)));
      const batches = s.nextDispatches();
      const onSlot2 = batches.find((b) => b.slotId === 2)!;
      answer(s, onSlot2);
      const next = s.nextDispatches();
      expect(slotsOf(next)).to.deep.equal([2]);
    });

    for (const batchesPerSlot of [1, 2, 3, 5]) {
      it(`keeps at most ${batchesPerSlot} batches in flight per slot`, () => {
        const s = scheduler({ chunkSize: 3, batchesPerSlot }, [1, 2]);
        s.addRun(new MapRun(1, jobsOf(1000)));
        const batches = s.nextDispatches();
        expect(batches).to.have.length(2 * batchesPerSlot);
        for (const [slot, n] of countBy(slotsOf(batches))) expect(n, `slot ${slot}`).to.equal(batchesPerSlot);
        expect(s.nextDispatches()).to.deep.equal([]);
      });
    }

    it('gives a slot credit back only when one of its batches is fully answered', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 2 }, [1]);
      s.addRun(new MapRun(1, jobsOf(1000)));
      const [a, b] = s.nextDispatches();
      answer(s, a!, 4);
      expect(s.nextDispatches(), 'after a partial answer').to.deep.equal([]);
      answer(s, b!);
      expect(s.nextDispatches(), 'after a full answer').to.have.length(1);
      expect(s.nextDispatches()).to.deep.equal([]);
      answer(s, a!);
      expect(s.nextDispatches()).to.have.length(1);
    });

    it('keeps every slot within its credit over a whole run', () => {
      const batchesPerSlot = 2;
      const s = scheduler({ chunkSize: 4, batchesPerSlot }, [1, 2, 3]);
      const run = new MapRun(1, jobsOf(200));
      s.addRun(run);
      const rand = prng(11);
      let inFlight: Batch[] = [];
      while (run.status === 'running') {
        inFlight.push(...s.nextDispatches());
        for (const [slot, n] of countBy(slotsOf(inFlight))) expect(n, `slot ${slot}`).to.be.at.most(batchesPerSlot);
        const batch = inFlight[Math.floor(rand() * inFlight.length)]!;
        answer(s, batch);
        inFlight = inFlight.filter((b) => b !== batch);
      }
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('stops giving a slot batches once its estimated in-flight bytes reach the budget', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 3, maxInFlightBytesPerSlot: 1500 }, [1, 2]);
      const run = new MapRun(1, jobsOf(1000));
      run.perJobBytes = 100;
      s.addRun(run);
      const batches = s.nextDispatches();
      // 1000 estimated bytes each: a slot under budget takes a second batch, then is over it.
      expect(batches.map((b) => b.estimatedBytes)).to.deep.equal([1000, 1000, 1000, 1000]);
      expect([...countBy(slotsOf(batches)).values()]).to.deep.equal([2, 2]);
    });

    it('still gives an idle slot one batch larger than its byte budget', () => {
      const s = scheduler({ chunkSize: 10, maxInFlightBytesPerSlot: 10 }, [1]);
      const run = new MapRun(1, jobsOf(100));
      run.perJobBytes = 100;
      s.addRun(run);
      expect(s.nextDispatches()).to.have.length(1);
    });

    describe('measured credit (batchesPerSlot left to the scheduler)', () => {
      /** A slot whose batches measured `batchMs` each and whose worker is `roundTripMs` away. */
      function measuredSlot(roundTripMs: number, batchMs: number, tuning: Partial<SchedulerTuning> = {}): Scheduler {
        const s = scheduler({ chunkSize: 10, ...tuning }, [1]);
        s.addRun(new MapRun(1, jobsOf(100)));
        s.observeRoundTrip(1, roundTripMs);
        for (const batch of s.nextDispatches()) answer(s, batch, size(batch), { busyMs: batchMs });
        return s;
      }

      it('keeps one batch running and the next in hand while the round trip is short', () => {
        expect(scheduler({}, [1]).creditOf(1), 'before any measurement').to.equal(2);
        expect(measuredSlot(0.3, 4).creditOf(1)).to.equal(2);
      });

      it('covers a long round trip: 1 + ceil(round trip / batch time) batches in flight', () => {
        expect(measuredSlot(40, 4).creditOf(1)).to.equal(11);
        expect(measuredSlot(40, 20).creditOf(1)).to.equal(3);
      });

      it('dispatches up to the measured credit, assuming targetBatchMs until a batch is timed', () => {
        const s = scheduler({ chunkSize: 1, targetBatchMs: 4 }, [1]);
        const run = new MapRun(1, jobsOf(1000));
        s.addRun(run);
        s.observeRoundTrip(1, 40);
        const first = s.nextDispatches();
        expect(first).to.have.length(11);
        for (const batch of first) answer(s, batch, 1, { busyMs: 20 });
        expect(s.nextDispatches()).to.have.length(3);
        expect(s.nextDispatches()).to.have.length(0);
      });

      it('counts a batch shorter than a quarter of targetBatchMs as that quarter: tiny young batches ask for bigger batches, not more in flight', () => {
        // 0.05 ms batches 1.5 ms away (an idle loopback daemon): 31 in flight, counted as they are.
        expect(measuredSlot(1.5, 0.05, { targetBatchMs: 4 }).creditOf(1)).to.equal(3);
        expect(measuredSlot(40, 0.05, { targetBatchMs: 4 }).creditOf(1), 'a long link still gets its credit').to.equal(41);
      });

      it('never goes past maxBatchesPerSlot', () => {
        expect(measuredSlot(10_000, 1, { maxBatchesPerSlot: 16 }).creditOf(1)).to.equal(16);
      });

      it('still stops at the in-flight byte budget however long the round trip', () => {
        const s = scheduler({ chunkSize: 10, maxInFlightBytesPerSlot: 3500 }, [1]);
        const run = new MapRun(1, jobsOf(1000));
        run.perJobBytes = 100;
        s.addRun(run);
        s.observeRoundTrip(1, 1000);
        expect(s.creditOf(1)).to.be.above(4);
        // 1000 bytes a batch: dispatched while under 3500 bytes in flight.
        expect(s.nextDispatches()).to.have.length(4);
        expect(s.nextDispatches()).to.have.length(0);
      });
    });

    it('splits a batch handed back as too large into halves, down to single jobs, answering each job once', () => {
      const s = scheduler({ chunkSize: 8 }, [1]);
      const run = new MapRun(1, jobsOf(8));
      s.addRun(run);
      const [whole] = s.nextDispatches();
      expect(s.splitBack(whole!.id)).to.equal(true);
      expect(s.batch(whole!.id)).to.equal(undefined);
      const halves = s.nextDispatches();
      expect(halves.map((b) => [b.start, b.end])).to.deep.equal([[0, 4], [4, 8]]);
      expect(s.splitBack(halves[0]!.id)).to.equal(true);
      answer(s, halves[1]!);
      const quarters = s.nextDispatches();
      expect(quarters.map((b) => [b.start, b.end])).to.deep.equal([[0, 2], [2, 4]]);
      for (const batch of quarters) answer(s, batch);
      expect(run.status).to.equal('succeeded');
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
      const single = scheduler({ chunkSize: 1 }, [1]);
      single.addRun(new MapRun(2, jobsOf(1)));
      expect(single.splitBack(single.nextDispatches()[0]!.id), 'a batch of one job cannot be split').to.equal(false);
    });

    it('honours a fixed chunkSize, the last batch taking the remainder', () => {
      const s = scheduler({ chunkSize: 8 }, [1, 2]);
      const run = new MapRun(1, jobsOf(45));
      s.addRun(run);
      const { dispatched } = drain(s);
      expect(dispatched.map(size)).to.deep.equal([8, 8, 8, 8, 8, 5]);
      expect(dispatched.map((b) => b.start)).to.deep.equal([0, 8, 16, 24, 32, 40]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('honours a chunkSize of 1', () => {
      const s = scheduler({ chunkSize: 1 }, [1]);
      const run = new MapRun(1, jobsOf(9));
      s.addRun(run);
      const { dispatched } = drain(s);
      expect(dispatched.map(size)).to.deep.equal(Array(9).fill(1));
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('dispatches nothing more once every job is handed out', () => {
      const s = scheduler({ chunkSize: 50 }, [1, 2, 3]);
      const run = new MapRun(1, jobsOf(60));
      s.addRun(run);
      expect(s.nextDispatches().map(size)).to.deep.equal([50, 10]);
      expect(run.unassigned).to.equal(0);
      expect(s.nextDispatches()).to.deep.equal([]);
    });

    it('looks batches up by id while they are in flight, and forgets them once answered', () => {
      const s = scheduler({ chunkSize: 5 }, [1]);
      s.addRun(new MapRun(1, jobsOf(10)));
      const [a] = s.nextDispatches();
      expect(s.batch(a!.id)).to.equal(a);
      answer(s, a!);
      expect(s.batch(a!.id)).to.equal(undefined);
    });
  });

  describe('results', () => {
    it('accepts a batch answered in several parts, each a prefix of what is left', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      expect(answer(s, batch!, 3).completed).to.deep.equal([]);
      expect(batch!.received).to.equal(3);
      expect(run.done).to.equal(3);
      expect(valuesOf(run).slice(0, 3)).to.deep.equal(run.jobs(0, 3).map(work));
      expect(valuesOf(run)[3]).to.equal(undefined);
      expect(answer(s, batch!, 0).completed).to.deep.equal([]);
      expect(answer(s, batch!, 5).completed).to.deep.equal([]);
      expect(batch!.received).to.equal(8);
      expect(answer(s, batch!, 2).completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('places parts of a batch that starts mid-run at the right job indices', () => {
      const s = scheduler({ chunkSize: 6 }, [1]);
      const run = new MapRun(1, jobsOf(12));
      s.addRun(run);
      const [first, second] = s.nextDispatches();
      expect(second!.start).to.equal(6);
      answer(s, second!, 2);
      answer(s, second!, 4);
      expect(valuesOf(run).slice(6)).to.deep.equal(run.jobs(6, run.total).map(work));
      expect(valuesOf(run).slice(0, 6)).to.deep.equal(Array(6).fill(undefined));
      expect(answer(s, first!).completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('retires a batch answered in full even without the final flag', () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 1 }, [1]);
      s.addRun(new MapRun(1, jobsOf(20)));
      const [batch] = s.nextDispatches();
      answer(s, batch!, 5, { final: false });
      expect(s.batch(batch!.id)).to.equal(undefined);
      expect(s.nextDispatches()).to.have.length(1);
    });

    it('ignores a duplicate of a part already applied', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!, 4);
      const outcome = s.onResults(batch!.id, 0, ['dup', 'dup', 'dup', 'dup'], undefined, 0, false);
      expect(outcome.completed).to.deep.equal([]);
      expect(outcome.failed).to.deep.equal([]);
      expect(run.done).to.equal(4);
      expect(batch!.received).to.equal(4);
      expect(valuesOf(run).slice(0, 4)).to.deep.equal(run.jobs(0, 4).map(work));
    });

    it('ignores a part that skips ahead of what was received', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!, 2);
      s.onResults(batch!.id, 5, ['skip', 'skip', 'skip', 'skip', 'skip'], undefined, 0, true);
      expect(batch!.received).to.equal(2);
      expect(run.done).to.equal(2);
      expect(s.batch(batch!.id)).to.equal(batch);
      expect(valuesOf(run).slice(5)).to.deep.equal(Array(5).fill(undefined));
      expect(answer(s, batch!).completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('ignores parts for an unknown batch id and for a batch already answered', () => {
      const s = scheduler({ chunkSize: 5 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [a] = s.nextDispatches();
      expect(s.onResults(9999, 0, ['x'], undefined, 0, true).completed).to.deep.equal([]);
      answer(s, a!);
      const again = s.onResults(a!.id, 0, ['x', 'x', 'x', 'x', 'x'], undefined, 0, true);
      expect(again.completed).to.deep.equal([]);
      const late = s.onResults(a!.id, 5, ['x'], undefined, 0, true);
      expect(late.completed).to.deep.equal([]);
      expect(run.done).to.equal(5);
      expect(valuesOf(run).slice(0, 5)).to.deep.equal(run.jobs(0, 5).map(work));
    });

    it('reports a completed run exactly once', () => {
      const s = scheduler({ chunkSize: 5 }, [1]);
      const run = new MapRun(1, jobsOf(5));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      expect(answer(s, batch!, 5, { final: false }).completed).to.deep.equal([run]);
      expect(s.onResults(batch!.id, 5, [], undefined, 0, true).completed).to.deep.equal([]);
    });
  });

  describe('slot loss', () => {
    it('forgets the lost batches and puts the unanswered rest of each back', () => {
      const s = scheduler({ chunkSize: 10 }, [1, 2]);
      const run = new MapRun(1, jobsOf(100));
      s.addRun(run);
      const batches = s.nextDispatches();
      const onSlot1 = batches.filter((b) => b.slotId === 1);
      expect(onSlot1).to.have.length(2);
      answer(s, onSlot1[0]!, 4);
      expect(s.removeSlot(1, RETIRED)).to.deep.equal(NOTHING);
      expect(s.slotCount).to.equal(1);
      expect(run.unassigned).to.equal(100 - 40 + 6 + 10);
      const back = [...run.retry].sort((a, b) => a[0] - b[0]);
      expect(back).to.deep.equal([[onSlot1[0]!.start + 4, onSlot1[0]!.end], [onSlot1[1]!.start, onSlot1[1]!.end]]);
      for (const b of onSlot1) expect(s.batch(b.id)).to.equal(undefined);
    });

    it('puts back nothing for a batch answered in full before the loss', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(20));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!);
      expect(s.removeSlot(1)).to.deep.equal(NOTHING);
      expect(run.retry).to.deep.equal([]);
      expect(run.suspects).to.deep.equal([]);
    });

    it('dispatches put-back jobs to other slots before fresh jobs', () => {
      const s = scheduler({ chunkSize: 10 }, [1, 2]);
      const run = new MapRun(1, jobsOf(100));
      s.addRun(run);
      const batches = s.nextDispatches();
      const onSlot1 = batches.filter((b) => b.slotId === 1);
      const onSlot2 = batches.filter((b) => b.slotId === 2);
      answer(s, onSlot1[0]!, 4);
      s.removeSlot(1, RETIRED);
      for (const b of onSlot2) answer(s, b);
      const next = s.nextDispatches();
      expect(slotsOf(next)).to.deep.equal([2, 2]);
      const ranges = next.map((b) => [b.start, b.end]).sort((a, b) => a[0]! - b[0]!);
      expect(ranges).to.deep.equal([[onSlot1[0]!.start + 4, onSlot1[0]!.end], [onSlot1[1]!.start, onSlot1[1]!.end]]);
      expect(run.retry).to.deep.equal([]);
    });

    it('splits a put-back range across the slots that remain when it is more than a fair share', () => {
      const s = scheduler({ batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      // Costly enough that a 3-job batch is above the size floor (about a quarter of targetBatchMs).
      run.perJobMs = 0.35;
      s.addRun(run);
      const [lost] = s.nextDispatches();
      expect([lost!.start, lost!.end]).to.deep.equal([0, 10]);
      s.removeSlot(1, RETIRED);
      s.addSlot(2);
      s.addSlot(3);
      const again = s.nextDispatches();
      // Each takes a fair share of what is left when it is dispatched: half, then half the rest.
      expect(again.map((b) => [b.start, b.end])).to.deep.equal([[0, 5], [5, 8]]);
      expect(new Set(slotsOf(again))).to.deep.equal(new Set([2, 3]));
      const { completed } = drain(s, undefined, again);
      expect(completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('ignores late parts from a lost slot; the jobs are answered once, by their new slot', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [lostBatch] = s.nextDispatches();
      answer(s, lostBatch!, 3);
      s.removeSlot(1, RETIRED);
      s.addSlot(2);
      const [retried] = s.nextDispatches();
      expect(retried!.slotId).to.equal(2);
      expect([retried!.start, retried!.end]).to.deep.equal([3, 10]);
      const late = s.onResults(lostBatch!.id, 3, Array(7).fill('stale'), undefined, 0, true);
      expect(late.completed).to.deep.equal([]);
      expect(run.done).to.equal(3);
      expect(answer(s, retried!).completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    it('ignores removing a slot it does not know', () => {
      const s = scheduler({}, [1]);
      expect(s.removeSlot(42)).to.deep.equal(NOTHING);
      expect(s.removeSlot(1)).to.deep.equal(NOTHING);
      expect(s.removeSlot(1)).to.deep.equal(NOTHING);
      expect(s.slotCount).to.equal(0);
    });

    it('puts nothing back when the lost batches belong to a run that already failed', () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 1 }, [1, 2]);
      const run = new MapRun(1, jobsOf(20));
      s.addRun(run);
      const [a, b] = s.nextDispatches();
      s.onResults(a!.id, 0, [null], [[0, remoteError('boom')]], 0, false);
      expect(run.status).to.equal('failed');
      expect(s.removeSlot(b!.slotId)).to.deep.equal(NOTHING);
      expect(run.retry).to.deep.equal([]);
      expect(run.suspects).to.deep.equal([]);
      expect(run.unassigned).to.equal(0);
      expect(s.nextDispatches()).to.deep.equal([]);
    });

    it('finishes a run after losing every slot and getting new ones', () => {
      const s = scheduler({ chunkSize: 4 }, [1, 2]);
      const run = new MapRun(1, jobsOf(30));
      s.addRun(run);
      const first = s.nextDispatches();
      answer(s, first[0]!, 2);
      answer(s, first[1]!);
      s.removeSlot(1);
      s.removeSlot(2);
      expect(s.nextDispatches()).to.deep.equal([]);
      s.addSlot(3);
      const { completed } = drain(s);
      expect(completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(allJobs(run).map(work));
    });

    describe('randomized: slots lost and added, partial and stale answers', () => {
      for (let seed = 1; seed <= 40; seed++) {
        it(`answers every job exactly once and completes every run (seed ${seed})`, () => simulate(seed));
      }
    });
  });

  describe('job errors', () => {
    it('fails the run with the lowest failing job index of the part, its slot and its error', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(30));
      s.addRun(run);
      const [, second] = s.nextDispatches();
      const values = run.jobs(10, 20).map(work);
      values[2] = values[5] = values[7] = null;
      const errors: [number, SerializedError][] = [[5, remoteError('e5')], [2, remoteError('e2')], [7, remoteError('e7')]];
      const outcome = s.onResults(second!.id, 0, values, errors, 1, true);
      expect(outcome.completed).to.deep.equal([]);
      expect(outcome.failed).to.have.length(1);
      const [failure] = outcome.failed;
      expect(failure!.run).to.equal(run);
      expect(failure!.jobIndex).to.equal(12);
      expect(failure!.slotId).to.equal(1);
      expect(failure!.kind).to.equal('error');
      expect(failure!.error!.message).to.equal('e2');
      expect(run.status).to.equal('failed');
      expect(s.activeRuns).to.not.include(run);
    });

    it('fails an unsendable job alone where it stands in its batch; a settling run gets the rest of the batch dispatched again', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(10), { settle: true });
      s.addRun(run);
      const [batch] = s.nextDispatches();
      const outcome = s.onUnsendable(batch!.id, remoteError('cannot encode'), 6);
      expect(outcome.failed.map((f) => [f.jobIndex, f.kind, f.error!.message])).to.deep.equal([[6, 'error', 'cannot encode']]);
      run.results.put(6, { status: 'rejected', reason: new Error('cannot encode') });
      const again = s.nextDispatches();
      expect(again.map((b) => [b.start, b.end])).to.deep.equal([[0, 6], [7, 10]]);
      for (const b of again) answer(s, b);
      expect(run.status).to.equal('succeeded');
      // A run that does not settle fails with it, and nothing of the batch goes out again.
      const failing = new MapRun(2, jobsOf(10));
      s.addRun(failing);
      const [other] = s.nextDispatches();
      expect(s.onUnsendable(other!.id, remoteError('cannot encode'), 3).failed[0]!.jobIndex).to.equal(3);
      expect(failing.status).to.equal('failed');
      expect(s.nextDispatches()).to.deep.equal([]);
    });

    it('counts an error index from the offset of the part it came in', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(20));
      s.addRun(run);
      const [, second] = s.nextDispatches();
      answer(s, second!, 4);
      const outcome = s.onResults(second!.id, 4, ['a', null, 'c'], [[1, remoteError('mid')]], 1, false);
      expect(outcome.failed[0]!.jobIndex).to.equal(10 + 4 + 1);
    });

    it('stops dispatching a failed run and drops its late results', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 2 }, [1, 2]);
      const run = new MapRun(1, jobsOf(100));
      s.addRun(run);
      const batches = s.nextDispatches();
      expect(batches).to.have.length(4);
      s.onResults(batches[0]!.id, 0, [null], [[0, remoteError('boom')]], 1, false);
      expect(run.status).to.equal('failed');
      answer(s, batches[1]!);
      expect(s.nextDispatches(), 'no more batches for a failed run').to.deep.equal([]);
      const late = answer(s, batches[2]!);
      expect(late.completed).to.deep.equal([]);
      expect(late.failed).to.deep.equal([]);
      const lateError = s.onResults(batches[3]!.id, 0, [null], [[0, remoteError('second')]], 1, false);
      expect(lateError.failed, 'a run fails once').to.deep.equal([]);
      expect(run.status).to.equal('failed');
    });

    it('keeps other runs going when one fails', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1, 2]);
      const failing = new MapRun(1, jobsOf(50));
      const healthy = new MapRun(2, jobsOf(25));
      s.addRun(failing);
      s.addRun(healthy);
      const [a, b] = s.nextDispatches();
      expect(a!.run).to.equal(failing);
      expect(b!.run).to.equal(failing);
      s.onResults(a!.id, 0, [null, ...Array(9).fill('x')], [[0, remoteError('boom')]], 1, true);
      const next = s.nextDispatches();
      for (const batch of next) expect(batch.run).to.equal(healthy);
      expect(next[0]!.run).to.equal(healthy);
      expect(next[0]!.slotId).to.equal(a!.slotId);
      answer(s, b!);
      const { completed } = drain(s, undefined, next);
      expect(completed).to.deep.equal([healthy]);
      expect(valuesOf(healthy)).to.deep.equal(allJobs(healthy).map(work));
      expect(failing.status).to.equal('failed');
    });

    it('ends a cancelled run: no more dispatch, late results dropped, ending twice is harmless', () => {
      const s = scheduler({ chunkSize: 5 }, [1]);
      const run = new MapRun(1, jobsOf(50));
      s.addRun(run);
      const [a] = s.nextDispatches();
      s.endRun(run, 'failed');
      s.endRun(run, 'succeeded');
      expect(run.status).to.equal('failed');
      expect(run.unassigned).to.equal(0);
      expect(answer(s, a!).completed).to.deep.equal([]);
      expect(run.done).to.equal(0);
      expect(s.nextDispatches()).to.deep.equal([]);
    });
  });

  describe('batch size', () => {
    it('ramps up geometrically before any measurement', () => {
      const s = scheduler({ batchesPerSlot: 5 }, [1]);
      s.addRun(new MapRun(1, jobsOf(100_000)));
      expect(s.nextDispatches().map(size)).to.deep.equal([4, 8, 16, 32, 64]);
    });

    it('grows to about targetBatchMs of work after a measurement of cheap jobs', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4 }, [1]);
      const run = new MapRun(1, jobsOf(100_000));
      s.addRun(run);
      const [first] = s.nextDispatches();
      expect(size(first!)).to.equal(4);
      answer(s, first!, 4, { busyMs: 0.25 });
      expect(run.perJobMs).to.equal(0.0625);
      const [second] = s.nextDispatches();
      expect(size(second!)).to.equal(64);
    });

    it('shrinks to one job per batch after a measurement of expensive jobs', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4 }, [1]);
      const run = new MapRun(1, jobsOf(1000));
      s.addRun(run);
      const [first] = s.nextDispatches();
      answer(s, first!, 4, { busyMs: 40 });
      const [second] = s.nextDispatches();
      expect(size(second!)).to.equal(1);
    });

    it('smooths later measurements instead of jumping to the last one', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4 }, [1]);
      const run = new MapRun(1, jobsOf(100_000));
      s.addRun(run);
      const [first] = s.nextDispatches();
      answer(s, first!, 4, { busyMs: 4 });
      expect(run.perJobMs).to.equal(1);
      const [second] = s.nextDispatches();
      answer(s, second!, size(second!), { busyMs: 0 });
      expect(run.perJobMs).to.be.above(0).and.below(1);
    });

    it('follows a falling cost per job at once, 4x a part: a cold first part does not keep a whole map in tiny batches', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4 }, [1]);
      const run = new MapRun(1, jobsOf(1_000_000));
      s.addRun(run);
      const [first] = s.nextDispatches();
      answer(s, first!, 4, { busyMs: 4 }); // 1 ms a job: per-batch cost and code not optimized yet
      const sizes: number[] = [];
      for (let i = 0; i < 6; i++) {
        const [batch] = s.nextDispatches();
        sizes.push(size(batch!));
        answer(s, batch!, size(batch!), { busyMs: size(batch!) * 0.001 }); // then 1 µs a job
      }
      // Smoothed both ways (30% a part), six parts later a job would still seem to cost ~0.12 ms: batches of ~34.
      expect(sizes).to.deep.equal([4, 16, 64, 256, 1024, 4000]);
    });

    it('bounds a batch by maxBatchBytes using the measured bytes per job', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4, maxBatchBytes: 16 * 1024 }, [1]);
      const run = new MapRun(1, jobsOf(100_000));
      s.addRun(run);
      const [first] = s.nextDispatches();
      answer(s, first!, 4, { busyMs: 0.004 });
      run.perJobBytes = 1024;
      const [second] = s.nextDispatches();
      expect(size(second!)).to.equal(16);
      expect(second!.estimatedBytes).to.equal(16 * 1024);
    });

    it('keeps to maxBatchBytes even before any time measurement', () => {
      const s = scheduler({ batchesPerSlot: 5, maxBatchBytes: 1000 }, [1]);
      const run = new MapRun(1, jobsOf(100_000));
      run.perJobBytes = 100;
      s.addRun(run);
      expect(s.nextDispatches().map(size)).to.deep.equal([4, 8, 10, 10, 10]);
    });

    it('caps a batch at maxBatchJobs', () => {
      const s = scheduler({ batchesPerSlot: 1, maxBatchJobs: 3 }, [1]);
      const run = new MapRun(1, jobsOf(1000));
      run.perJobMs = 1e-6;
      s.addRun(run);
      expect(s.nextDispatches().map(size)).to.deep.equal([3]);
    });

    it('takes no more than a fair share of what is left, so every slot gets work', () => {
      const s = scheduler({ batchesPerSlot: 2 }, [1, 2, 3, 4]);
      const run = new MapRun(1, jobsOf(40));
      run.perJobMs = 0.5;
      s.addRun(run);
      const batches = s.nextDispatches();
      expect(batches).to.have.length(8);
      expect(size(batches[0]!)).to.equal(5);
      for (let i = 1; i < batches.length; i++) expect(size(batches[i]!)).to.be.at.most(size(batches[i - 1]!));
      expect([...countBy(slotsOf(batches)).values()]).to.deep.equal([2, 2, 2, 2]);
    });

    it('stops shrinking batches at about a quarter of the target time, where round trips would cost more than balance gains', () => {
      const s = scheduler({ batchesPerSlot: 2 }, [1, 2]);
      const run = new MapRun(1, jobsOf(1000));
      run.perJobMs = 0.001; // 1 µs: the floor is 1,000 jobs, the whole map
      s.addRun(run);
      const batches = s.nextDispatches();
      expect(batches.map((b) => [b.start, b.end])).to.deep.equal([[0, 1000]]);
    });

    it('never makes an empty batch, even for the last job', () => {
      const s = scheduler({ batchesPerSlot: 3 }, [1, 2, 3, 4, 5]);
      const run = new MapRun(1, jobsOf(3));
      s.addRun(run);
      const batches = s.nextDispatches();
      expect(batches.map(size)).to.deep.equal([1, 1, 1]);
      expect(new Set(slotsOf(batches)).size).to.equal(3);
    });

    it('estimates in-flight bytes as bytes per job times batch size', () => {
      const s = scheduler({ chunkSize: 7 }, [1]);
      const run = new MapRun(1, jobsOf(100));
      run.perJobBytes = 3;
      s.addRun(run);
      expect(s.nextDispatches().map((b) => b.estimatedBytes)).to.deep.equal([21, 21]);
    });
  });

  describe('several runs', () => {
    it('runs two at once: the first is served first, each gets its own results', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1]);
      const first = new MapRun(1, jobsOf(30));
      const second = new MapRun(2, jobsOf(20).map((j) => -j));
      s.addRun(first);
      s.addRun(second);
      const { dispatched, completed } = drain(s);
      expect(dispatched.map((b) => b.run.id)).to.deep.equal([1, 1, 1, 2, 2]);
      expect(completed).to.deep.equal([first, second]);
      expect(valuesOf(first)).to.deep.equal(allJobs(first).map(work));
      expect(valuesOf(second)).to.deep.equal(allJobs(second).map(work));
    });

    it('gives idle slots to a second run once the first has nothing left to hand out', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1, 2, 3]);
      const first = new MapRun(1, jobsOf(10));
      const second = new MapRun(2, jobsOf(20));
      s.addRun(first);
      s.addRun(second);
      const batches = s.nextDispatches();
      expect(batches.map((b) => b.run.id)).to.deep.equal([1, 2, 2]);
      expect(new Set(slotsOf(batches)).size).to.equal(3);
    });

    it('completes two interleaved runs answered out of order with slot losses', () => {
      const s = scheduler({ chunkSize: 3 }, [1, 2]);
      const a = new MapRun(1, jobsOf(25));
      const b = new MapRun(2, jobsOf(17).map((j) => `b${j}`));
      s.addRun(a);
      const early = s.nextDispatches();
      s.addRun(b);
      answer(s, early[0]!, 1);
      s.removeSlot(early[0]!.slotId);
      s.addSlot(3);
      const rand = prng(5);
      const stillOut = early.filter((batch) => batch.slotId !== early[0]!.slotId);
      const { completed } = drain(s, (inFlight) => inFlight[Math.floor(rand() * inFlight.length)]!, stillOut);
      expect(new Set(completed)).to.deep.equal(new Set([a, b]));
      expect(valuesOf(a)).to.deep.equal(allJobs(a).map(work));
      expect(valuesOf(b)).to.deep.equal(allJobs(b).map(work));
    });
  });
});

/**
 * One seeded history of a cluster that loses and gains slots while answering in random parts,
 * with stale and duplicate parts thrown in. Checks the invariants at every step and, at the end,
 * that every run's results are exactly its jobs mapped, each job answered by exactly one part.
 */
function simulate(seed: number): void {
  const { rand, int, pick } = seeded(seed);
  const tuning = randomTuning(rand, int);
  const s = new Scheduler(tuning);
  const slots = new Set<number>();
  let nextSlot = 1;
  const addSlot = () => {
    s.addSlot(nextSlot);
    slots.add(nextSlot++);
  };
  for (let i = 1 + int(4); i > 0; i--) addSlot();

  const runCount = 1 + int(3);
  const runs: MapRun[] = [];
  const answeredBy = new Map<RunView, number[]>();
  const completed: RunView[] = [];
  const addRun = () => {
    const total = rand() < 0.1 ? 0 : 1 + int(250);
    const run = new MapRun(runs.length + 1, Array.from({ length: total }, () => int(1_000_000)));
    if (rand() < 0.5) run.perJobBytes = 1 + int(16);
    runs.push(run);
    answeredBy.set(run, new Array(total).fill(0));
    s.addRun(run);
    if (total === 0) {
      expect(run.status).to.equal('succeeded');
      completed.push(run);
    }
  };
  addRun();

  const live = new Map<number, Batch>();
  const stale: Batch[] = [];
  const context = () => `seed ${seed}, tuning ${JSON.stringify(tuning)}`;

  for (let step = 0; ; step++) {
    if (step > 200_000) throw new Error(`simulation stuck: ${context()}`);
    if (runs.length === runCount && completed.length === runCount) break;

    for (const batch of s.nextDispatches()) {
      expect(slots.has(batch.slotId), context()).to.equal(true);
      expect(batch.run.status, context()).to.equal('running');
      expect(batch.start, context()).to.be.at.least(0);
      expect(batch.start, context()).to.be.below(batch.end);
      expect(batch.end, context()).to.be.at.most((batch.run as MapRun).total);
      expect(batch.received).to.equal(0);
      for (const other of live.values()) {
        if (other.run !== batch.run) continue;
        const overlap = batch.start < other.end && other.start + other.received < batch.end;
        expect(overlap, `batch ${batch.id} overlaps unanswered jobs of batch ${other.id}: ${context()}`).to.equal(false);
      }
      live.set(batch.id, batch);
    }
    for (const [slot, n] of countBy([...live.values()].map((b) => b.slotId))) {
      expect(n, `slot ${slot} over its credit: ${context()}`).to.be.at.most(tuning.batchesPerSlot!);
    }

    const roll = rand();
    if (roll < 0.04 && runs.length < runCount) {
      addRun();
    } else if (roll < 0.1 && slots.size > 0) {
      const slot = pick([...slots]);
      slots.delete(slot);
      // Nobody is blamed here (scheduler-faults.test.ts covers blame): every lost job goes back.
      expect(s.removeSlot(slot, RETIRED), context()).to.deep.equal(NOTHING);
      const lost = [...live.values()].filter((b) => b.slotId === slot);
      for (const b of lost) {
        expect(s.batch(b.id), context()).to.equal(undefined);
        live.delete(b.id);
        stale.push(b);
      }
    } else if (roll < 0.16 || slots.size === 0) {
      addSlot();
    } else if (roll < 0.22 && stale.length > 0) {
      // A part from a lost slot that was still on the wire: ignored, the jobs went back.
      const b = pick(stale);
      const count = int(size(b) - b.received + 1);
      const outcome = s.onResults(b.id, b.received, Array(count).fill('stale'), undefined, 1, rand() < 0.5);
      expect(outcome.completed, context()).to.deep.equal([]);
      expect(outcome.failed, context()).to.deep.equal([]);
    } else if (roll < 0.26 && live.size > 0) {
      // A duplicate of a part already applied, or one that skips ahead: ignored.
      const b = pick([...live.values()]);
      const offset = b.received > 0 && rand() < 0.5 ? int(b.received) : b.received + 1 + int(3);
      const before = b.received;
      const outcome = s.onResults(b.id, offset, ['dup'], undefined, 1, false);
      expect(outcome.completed, context()).to.deep.equal([]);
      expect(b.received, context()).to.equal(before);
    } else if (live.size > 0) {
      const b = pick([...live.values()]);
      const left = size(b) - b.received;
      const count = rand() < 0.4 ? left : int(left + 1);
      const counts = answeredBy.get(b.run)!;
      for (let i = b.start + b.received; i < b.start + b.received + count; i++) counts[i]!++;
      const outcome = answer(s, b, count, { busyMs: rand() * 2 });
      if (b.received === size(b)) live.delete(b.id);
      expect(outcome.failed, context()).to.deep.equal([]);
      for (const run of outcome.completed) {
        expect(completed, `run ${run.id} completed twice: ${context()}`).to.not.include(run);
        completed.push(run);
      }
    }
  }

  expect(live.size, context()).to.equal(0);
  for (const run of runs) {
    expect(run.status, context()).to.equal('succeeded');
    expect(run.done, context()).to.equal(run.total);
    expect(valuesOf(run), `run ${run.id}: ${context()}`).to.deep.equal(allJobs(run).map(work));
    const counts = answeredBy.get(run)!;
    counts.forEach((n, i) => expect(n, `run ${run.id} job ${i} answered ${n} times: ${context()}`).to.equal(1));
  }
  expect(s.activeRuns, context()).to.have.length(0);
}

describe('Scheduler with many runs at once (issue 12, item 10)', () => {
  /** A run that counts how often the scheduler asks it for jobs to hand out. */
  class CountingRun extends MapRun {
    static reads = 0;
    override get unassigned(): number {
      CountingRun.reads++;
      return super.unassigned;
    }
  }

  it('finds the next run to serve without looking at every run: the work per map stays flat however many maps run', () => {
    const readsPerMap = (maps: number): number => {
      const s = scheduler({ chunkSize: 1, batchesPerSlot: 1_000_000 }, [1]);
      const runs = Array.from({ length: maps }, (_, i) => new CountingRun(i + 1, [i]));
      CountingRun.reads = 0;
      // As N concurrent map() calls do: each arrives, is dispatched, and waits for its answer.
      for (const run of runs) {
        s.addRun(run);
        expect(s.nextDispatches()).to.have.length(1);
      }
      for (const batch of s.nextDispatches()) answer(s, batch);
      return CountingRun.reads / maps;
    };
    const few = readsPerMap(200);
    const many = readsPerMap(5_000);
    // A scan of every run reads ~N per map (2,500 here); an index reads a few, whatever N.
    expect(many, `reads per map: ${few} with 200 maps, ${many} with 5,000`).to.be.at.most(few * 1.5 + 2);
  });
});
