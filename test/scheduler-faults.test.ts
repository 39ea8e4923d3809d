import { expect } from 'chai';
import type { SerializedError } from '@mapscale/protocol';
import {
  MapRun, Scheduler, type Batch, type JobFailure, type ResultOutcome, type SchedulerTuning, type SlotLoss, type RunView,
} from '../packages/coordinator/dist/scheduler.js';
import { ArrayResults, OrderedResults, type Settled } from '../packages/coordinator/dist/result-stores.js';
import type { RunOptions } from '../packages/coordinator/dist/map-run.js';
import { answer, jobsOf, randomTuning, remoteError, scheduler, seeded, size, work } from './helpers/scheduler.js';

/**
 * The scheduler's answers to faults (issue 4): who is blamed when a slot is lost, poison jobs
 * isolated by halving, timeouts, settled runs, lazy runs inside their window, ended runs, and
 * parts that stop short or overrun. Everything is pure: seeded simulations stand in for workers.
 */

function ids(batches: readonly Batch[]): number[] {
  return batches.map((b) => b.id).sort((a, b) => a - b);
}

const NOTHING: ResultOutcome = { completed: [], failed: [], cancelled: [] };

/** Every store put, counted per index: a job answered twice shows up as a count of 2. */
class CountingResults extends ArrayResults {
  readonly puts = new Map<number, number>();
  override put(index: number, value: unknown): void {
    this.puts.set(index, (this.puts.get(index) ?? 0) + 1);
    super.put(index, value);
  }
  override putAll(first: number, values: readonly unknown[]): void {
    for (let i = 0; i < values.length; i++) this.puts.set(first + i, (this.puts.get(first + i) ?? 0) + 1);
    super.putAll(first, values);
  }
}

function countingRun(id: number, jobs: readonly unknown[] | undefined, options: Partial<RunOptions> = {}): MapRun {
  return new MapRun(id, jobs, options, new CountingResults(jobs?.length ?? 0));
}

function putsOf(run: MapRun): Map<number, number> {
  return (run.results as CountingResults).puts;
}

function valuesOf(run: MapRun): unknown[] {
  return (run.results as ArrayResults).values;
}

/** What the engine does with a settling run's failure: the reason becomes that job's result. */
function settleFailures(outcome: ResultOutcome): void {
  for (const failure of outcome.failed) {
    if (failure.run.options.settle) failure.run.results.put(failure.jobIndex, { status: 'rejected', reason: new Error(failure.kind) });
  }
}

/**
 * Mirrors what each slot holds, in dispatch order (the first is the one running), the way the
 * engine knows it. Batches the scheduler has forgotten (answered, or dropped with their run) are
 * pruned on `sync`.
 */
class SlotMirror {
  readonly queues = new Map<number, Batch[]>();
  constructor(readonly s: Scheduler) {}

  addSlot(id: number): void {
    this.s.addSlot(id);
    this.queues.set(id, []);
  }

  dispatch(): Batch[] {
    const fresh = this.s.nextDispatches();
    for (const batch of fresh) this.queues.get(batch.slotId)!.push(batch);
    return fresh;
  }

  /** Removes the slot; returns what it held and the outcome. */
  lose(id: number, loss: SlotLoss): { held: Batch[]; outcome: ResultOutcome } {
    const held = this.queues.get(id)!;
    this.queues.delete(id);
    const outcome = this.s.removeSlot(id, loss);
    for (const batch of held) expect(this.s.batch(batch.id), `batch ${batch.id} of a lost slot`).to.equal(undefined);
    return { held, outcome };
  }

  sync(): void {
    for (const [id, queue] of this.queues) this.queues.set(id, queue.filter((b) => this.s.batch(b.id) === b));
  }

  get live(): Batch[] {
    return [...this.queues.values()].flat();
  }

  running(id: number): Batch | undefined {
    return this.queues.get(id)?.[0];
  }

  busySlots(): number[] {
    return [...this.queues].filter(([, q]) => q.length > 0).map(([id]) => id);
  }
}

describe('Scheduler faults', () => {
  describe('who is blamed for a lost slot', () => {
    it("'disconnected' sends the running batch's rest to suspects and the queued batches to retry", () => {
      const s = scheduler({ chunkSize: 8, batchesPerSlot: 2 }, [1]);
      const run = new MapRun(1, jobsOf(40));
      s.addRun(run);
      const [running, queued] = s.nextDispatches();
      answer(s, running!, 3, { final: false });
      expect(s.removeSlot(1, { kind: 'disconnected' })).to.deep.equal(NOTHING);
      expect(run.suspects).to.deep.equal([[3, 8]]);
      expect(run.retry).to.deep.equal([[queued!.start, queued!.end]]);
      expect(run.crashes.size).to.equal(0);
    });

    it('hands suspects out in halves before retried and fresh jobs', () => {
      const s = scheduler({ chunkSize: 8, batchesPerSlot: 2 }, [1]);
      const run = new MapRun(1, jobsOf(40));
      s.addRun(run);
      s.nextDispatches();
      s.removeSlot(1, { kind: 'disconnected' });
      s.addSlot(2);
      s.addSlot(3);
      const again = s.nextDispatches();
      // Each time a suspect range goes out, half of what is left of it goes: the poison job, if
      // any, soon runs alone.
      expect(again.map((b) => [b.start, b.end, b.suspect])).to.deep.equal([[0, 4, true], [4, 6, true], [6, 7, true], [7, 8, true]]);
      expect(run.suspects).to.deep.equal([]);
      answer(s, again[0]!);
      expect(s.nextDispatches().map((b) => [b.start, b.end, b.suspect])).to.deep.equal([[8, 16, false]]);
    });

    it("'retired' blames nobody: every unanswered job goes back to retry", () => {
      const s = scheduler({ chunkSize: 1, batchesPerSlot: 2 }, [1]);
      const run = new MapRun(1, jobsOf(10), { maxJobRetries: 0 });
      s.addRun(run);
      s.nextDispatches();
      expect(s.removeSlot(1, { kind: 'retired' })).to.deep.equal(NOTHING);
      expect([...run.retry].sort((a, b) => a[0] - b[0])).to.deep.equal([[0, 1], [1, 2]]);
      expect(run.suspects).to.deep.equal([]);
      expect(run.crashes.size).to.equal(0);
      expect(run.status).to.equal('running');
    });

    it("'crashed' naming another batch than the running one blames nobody", () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 2 }, [1]);
      const run = new MapRun(1, jobsOf(10), { maxJobRetries: 0 });
      s.addRun(run);
      const [, queued] = s.nextDispatches();
      expect(s.removeSlot(1, { kind: 'crashed', batchId: queued!.id, jobOffset: 0 })).to.deep.equal(NOTHING);
      expect(run.crashes.size).to.equal(0);
      expect(run.unassigned).to.equal(10);
    });

    it("a 'disconnected' single-job batch is blamed at once, and fails when maxJobRetries is 0", () => {
      const s = scheduler({ chunkSize: 1, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(3), { maxJobRetries: 0 });
      s.addRun(run);
      s.nextDispatches();
      const outcome = s.removeSlot(1, { kind: 'disconnected' });
      expect(outcome.failed.map((f) => [f.jobIndex, f.kind, f.attempts])).to.deep.equal([[0, 'crash', 1]]);
      expect(run.status).to.equal('failed');
    });
  });

  describe('exactly once under random losses of every kind', () => {
    for (let seed = 1; seed <= 60; seed++) {
      it(`answers every job of every run exactly once, as a result or a failure (seed ${seed})`, () => simulateFaults(seed));
    }
  });

  describe('a poison job that kills its whole worker (disconnected)', () => {
    for (const settle of [true, false]) {
      for (let seed = 1; seed <= 12; seed++) {
        it(`is isolated by halving and fails with 'crash' after maxJobRetries+1 solo crashes (${settle ? 'settle' : 'fail fast'}, seed ${seed})`, () => {
          poisonByDisconnect(seed, settle);
        });
      }
    }
  });

  describe('a job that crashes its instance, attributed exactly', () => {
    for (const maxJobRetries of [0, 1, 2, 4]) {
      it(`fails after maxJobRetries+1 attempts and blames no other job (maxJobRetries ${maxJobRetries})`, () => {
        poisonByCrash(maxJobRetries, 3 + maxJobRetries);
      });
    }

    it('fails a run that does not settle with the crash and its error', () => {
      const s = scheduler({ chunkSize: 4, batchesPerSlot: 2 }, [1, 2]);
      const run = new MapRun(1, jobsOf(20), { maxJobRetries: 0 });
      s.addRun(run);
      const [a] = s.nextDispatches();
      answer(s, a!, 1, { final: false });
      const outcome = s.removeSlot(a!.slotId, { kind: 'crashed', batchId: a!.id, jobOffset: 2, error: remoteError('exit 7') });
      expect(outcome.completed).to.deep.equal([]);
      expect(outcome.failed).to.have.length(1);
      expect(outcome.failed[0]).to.include({ run, jobIndex: 2, slotId: a!.slotId, kind: 'crash', attempts: 1 });
      expect(outcome.failed[0]!.error).to.deep.equal(remoteError('exit 7'));
      expect(run.status).to.equal('failed');
      expect(s.activeRuns).to.not.include(run);
    });
  });

  describe('timeout', () => {
    it('fails just the job that ran over; the rest of its batch and the queued batch go back', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 2 }, [1]);
      const run = countingRun(1, jobsOf(30), { settle: true });
      s.addRun(run);
      const [running, queued] = s.nextDispatches();
      answer(s, running!, 3, { final: false });
      const outcome = s.removeSlot(1, { kind: 'timeout', batchId: running!.id, jobOffset: 5 });
      expect(outcome.completed).to.deep.equal([]);
      expect(outcome.failed.map((f) => [f.jobIndex, f.kind, f.slotId])).to.deep.equal([[5, 'timeout', 1]]);
      expect(run.status).to.equal('running');
      expect(run.crashes.size, 'a timeout is not a crash').to.equal(0);
      expect(run.suspects).to.deep.equal([]);
      expect([...run.retry].sort((a, b) => a[0] - b[0])).to.deep.equal([[3, 5], [6, 10], [queued!.start, queued!.end]]);
      settleFailures(outcome);
      const mirror = new SlotMirror(s);
      mirror.addSlot(2);
      const completed = drainMirror(mirror);
      expect(completed).to.deep.equal([run]);
      expect(run.done).to.equal(30);
      for (let i = 0; i < 30; i++) expect(putsOf(run).get(i), `job ${i}`).to.equal(1);
      const values = valuesOf(run) as Settled<unknown>[];
      expect(values[5]!.status).to.equal('rejected');
      values.forEach((v, i) => {
        if (i !== 5) expect(v, `job ${i}`).to.deep.equal({ status: 'fulfilled', value: work(run.jobs(i, i + 1)[0]) });
      });
    });

    it('fails a run that does not settle with kind timeout', () => {
      const s = scheduler({ chunkSize: 10 }, [1]);
      const run = new MapRun(1, jobsOf(20));
      s.addRun(run);
      const [running] = s.nextDispatches();
      const outcome = s.removeSlot(1, { kind: 'timeout', batchId: running!.id, jobOffset: 0 });
      expect(outcome.failed).to.have.length(1);
      expect(outcome.failed[0]).to.include({ jobIndex: 0, kind: 'timeout' });
      expect(outcome.failed[0]!.error).to.equal(undefined);
      expect(run.status).to.equal('failed');
    });

    it('completes a settling run whose last unanswered job times out', () => {
      const s = scheduler({ chunkSize: 4, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(4), { settle: true });
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!, 3, { final: false });
      const outcome = s.removeSlot(1, { kind: 'timeout', batchId: batch!.id, jobOffset: 3 });
      expect(outcome.failed.map((f) => f.jobIndex)).to.deep.equal([3]);
      expect(outcome.completed).to.deep.equal([run]);
      expect(run.status).to.equal('succeeded');
      expect(run.done).to.equal(4);
    });

    it('clamps a job offset outside the unanswered rest to a job that is still unanswered', () => {
      const s = scheduler({ chunkSize: 6, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(6), { settle: true });
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!, 4, { final: false });
      const outcome = s.removeSlot(1, { kind: 'timeout', batchId: batch!.id, jobOffset: 1 });
      expect(outcome.failed.map((f) => f.jobIndex)).to.deep.equal([4]);
      expect(run.retry).to.deep.equal([[5, 6]]);
    });
  });

  describe('settled runs', () => {
    it('record every failing job and keep going to the end, failures counted as answered', () => {
      const mirror = new SlotMirror(new Scheduler({ chunkSize: 5, batchesPerSlot: 2 }));
      const s = mirror.s;
      for (const id of [1, 2]) mirror.addSlot(id);
      const run = countingRun(1, jobsOf(30), { settle: true, maxJobRetries: 0 });
      s.addRun(run);
      const failed: JobFailure[] = [];
      const completed: RunView[] = [];
      // Job errors in two parts, and a crash: none of them stops the run.
      const [a, b] = mirror.dispatch();
      let outcome = answer(s, a!, 5, { errors: [[3, remoteError('e3')], [1, remoteError('e1')]] });
      expect(outcome.failed.map((f) => [f.jobIndex, f.kind, f.error!.message])).to.deep.equal([[1, 'error', 'e1'], [3, 'error', 'e3']]);
      failed.push(...outcome.failed);
      settleFailures(outcome);
      expect(run.status).to.equal('running');
      outcome = answer(s, b!, 5, { errors: [[0, remoteError('e5')]] });
      failed.push(...outcome.failed);
      settleFailures(outcome);
      mirror.sync();
      mirror.dispatch();
      const crashedBatch = mirror.running(1)!;
      outcome = mirror.lose(1, { kind: 'crashed', batchId: crashedBatch.id, jobOffset: 0 }).outcome;
      expect(outcome.failed.map((f) => [f.jobIndex, f.kind, f.attempts])).to.deep.equal([[crashedBatch.start, 'crash', 1]]);
      expect(run.status).to.equal('running');
      failed.push(...outcome.failed);
      settleFailures(outcome);
      mirror.addSlot(3);
      completed.push(...drainMirror(mirror));
      expect(completed).to.deep.equal([run]);
      expect(run.status).to.equal('succeeded');
      expect(run.done).to.equal(30);
      expect(failed.map((f) => f.kind).sort()).to.deep.equal(['crash', 'error', 'error', 'error']);
      expect(failed.filter((f) => f.kind === 'error').map((f) => f.jobIndex)).to.deep.equal([1, 3, 5]);
      const failedAt = new Set(failed.map((f) => f.jobIndex));
      expect(failedAt.size).to.equal(4);
      for (let i = 0; i < 30; i++) {
        expect(putsOf(run).get(i), `job ${i}`).to.equal(1);
        const value = valuesOf(run)[i] as Settled<unknown>;
        if (failedAt.has(i)) expect(value.status, `job ${i}`).to.equal('rejected');
        else expect(value, `job ${i}`).to.deep.equal({ status: 'fulfilled', value: work(run.jobs(i, i + 1)[0]) });
      }
    });

    it('report completion once even when the last answer is a failure', () => {
      const s = scheduler({ chunkSize: 3 }, [1]);
      const run = new MapRun(1, jobsOf(3), { settle: true });
      s.addRun(run);
      const [batch] = s.nextDispatches();
      const outcome = answer(s, batch!, 3, { errors: [[2, remoteError('last')]] });
      expect(outcome.completed).to.deep.equal([run]);
      expect(outcome.failed.map((f) => f.jobIndex)).to.deep.equal([2]);
      expect(s.onResults(batch!.id, 3, [], undefined, 0, true)).to.deep.equal(NOTHING);
    });
  });

  describe('lazy runs', () => {
    for (const window of [1, 3, 16, 100]) {
      it(`never dispatch beyond lowestUnanswered + window, and complete after inputEnded (window ${window})`, () => {
        lazyWindow(window, 2500, 7 + window);
      });
    }

    it('do not complete before inputEnded, even with every job read answered', () => {
      const s = scheduler({ chunkSize: 4 }, [1]);
      const run = new MapRun(1, undefined, { window: 10 });
      expect(s.addRun(run)).to.deep.equal(NOTHING);
      for (let i = 0; i < 4; i++) s.onJobRead(run, i);
      const [batch] = s.nextDispatches();
      expect(answer(s, batch!)).to.deep.equal(NOTHING);
      expect(run.status).to.equal('running');
      expect(run.total).to.equal(Infinity);
      expect(s.inputEnded(run)).to.deep.equal({ completed: [run], failed: [], cancelled: [] });
      expect(run.status).to.equal('succeeded');
      expect(valuesOf(run)).to.deep.equal([0, 1, 2, 3].map(work));
      expect(s.inputEnded(run), 'a second end changes nothing').to.deep.equal(NOTHING);
    });

    it('complete an empty input at inputEnded', () => {
      const s = scheduler({}, [1]);
      const run = new MapRun(1, undefined, { window: 5 });
      s.addRun(run);
      expect(run.wantsJobs).to.equal(true);
      expect(s.nextDispatches()).to.deep.equal([]);
      expect(s.inputEnded(run)).to.deep.equal({ completed: [run], failed: [], cancelled: [] });
      expect(run.wantsJobs).to.equal(false);
    });

    it('stop dispatching while a streaming consumer holds a window of results, and resume once it takes them', () => {
      const s = scheduler({ chunkSize: 2, batchesPerSlot: 4 }, [1]);
      const store = new OrderedResults();
      const run = new MapRun(1, jobsOf(20), { window: 4 }, store);
      s.addRun(run);
      const first = s.nextDispatches();
      expect(first.map((b) => [b.start, b.end])).to.deep.equal([[0, 2], [2, 4]]);
      for (const b of first) answer(s, b);
      expect(store.backlog).to.equal(4);
      expect(s.nextDispatches(), 'the consumer has not taken anything').to.deep.equal([]);
      expect(store.takeReady().length).to.equal(4);
      s.onConsumed(run);
      expect(s.nextDispatches().map((b) => [b.start, b.end])).to.deep.equal([[4, 6], [6, 8]]);
    });
  });

  describe('endRun', () => {
    it('returns the batches in flight, forgets them and frees their credit', () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 2 }, [1, 2]);
      const ended = new MapRun(1, jobsOf(100));
      s.addRun(ended);
      const batches = s.nextDispatches();
      expect(batches).to.have.length(4);
      answer(s, batches[0]!);
      answer(s, batches[1]!, 2, { final: false });
      const dropped = s.endRun(ended, 'failed');
      expect(ids(dropped)).to.deep.equal(ids(batches.slice(1)));
      for (const b of batches) expect(s.batch(b.id)).to.equal(undefined);
      expect(ended.status).to.equal('failed');
      expect(s.endRun(ended, 'failed'), 'ending twice').to.deep.equal([]);
      const next = new MapRun(2, jobsOf(100));
      s.addRun(next);
      const fresh = s.nextDispatches();
      expect(fresh, 'every slot has its full credit again').to.have.length(4);
      for (const b of fresh) expect(b.run).to.equal(next);
      expect(answer(s, batches[2]!), 'a late part of a dropped batch').to.deep.equal(NOTHING);
      expect(ended.done).to.equal(7);
    });

    it('drops what a run had waiting to be handed out again', () => {
      const s = scheduler({ chunkSize: 5, batchesPerSlot: 2 }, [1]);
      const run = new MapRun(1, jobsOf(30));
      s.addRun(run);
      s.nextDispatches();
      s.removeSlot(1, { kind: 'disconnected' });
      expect(run.unassigned).to.be.above(0);
      s.addSlot(2);
      expect(s.endRun(run, 'failed')).to.deep.equal([]);
      expect(run.unassigned).to.equal(0);
      expect(s.nextDispatches()).to.deep.equal([]);
    });
  });

  describe('parts that stop short or overrun', () => {
    it('a final part that stops short hands the rest back, and it is answered once elsewhere', () => {
      const s = scheduler({ chunkSize: 10, batchesPerSlot: 1 }, [1]);
      const run = countingRun(1, jobsOf(10));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      expect(answer(s, batch!, 4, { final: true })).to.deep.equal(NOTHING);
      expect(s.batch(batch!.id)).to.equal(undefined);
      expect(run.retry).to.deep.equal([[4, 10]]);
      const [again] = s.nextDispatches();
      expect([again!.start, again!.end, again!.slotId]).to.deep.equal([4, 10, 1]);
      expect(answer(s, again!).completed).to.deep.equal([run]);
      expect(valuesOf(run)).to.deep.equal(run.jobs(0, 10).map(work));
      for (let i = 0; i < 10; i++) expect(putsOf(run).get(i), `job ${i}`).to.equal(1);
    });

    it('an empty final part hands the whole batch back', () => {
      const s = scheduler({ chunkSize: 6, batchesPerSlot: 1 }, [1]);
      const run = new MapRun(1, jobsOf(6));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      expect(s.onResults(batch!.id, 0, [], undefined, 0, true)).to.deep.equal(NOTHING);
      expect(run.retry).to.deep.equal([[0, 6]]);
      expect(s.nextDispatches()).to.have.length(1);
    });

    it('flags a part with more results than jobs left as malformed and applies none of it', () => {
      const s = scheduler({ chunkSize: 5 }, [1]);
      const run = new MapRun(1, jobsOf(10));
      s.addRun(run);
      const [batch] = s.nextDispatches();
      answer(s, batch!, 2, { final: false });
      const outcome = s.onResults(batch!.id, 2, ['a', 'b', 'c', 'd'], undefined, 1, true);
      expect(outcome).to.deep.equal({ completed: [], failed: [], cancelled: [], malformed: true });
      expect(batch!.received).to.equal(2);
      expect(run.done).to.equal(2);
      expect(valuesOf(run)[2]).to.equal(undefined);
      expect(s.batch(batch!.id)).to.equal(batch);
      expect(answer(s, batch!, 3).malformed, 'exactly what is left is fine').to.equal(undefined);
    });
  });

  describe('measurements', () => {
    it('carries the last measured cost and size per job to a new run', () => {
      const s = scheduler({ batchesPerSlot: 1, targetBatchMs: 4, maxBatchBytes: 1 << 30 }, [1]);
      const first = new MapRun(1, jobsOf(100));
      s.addRun(first);
      const [batch] = s.nextDispatches();
      s.observeEncoded(first, 400, size(batch!));
      expect(first.perJobBytes).to.equal(100);
      answer(s, batch!, size(batch!), { busyMs: 2 });
      expect(first.perJobMs).to.equal(0.5);
      s.observeEncoded(first, 0, 0);
      expect(first.perJobBytes, 'an empty sample is ignored').to.equal(100);
      s.endRun(first, 'failed');

      const second = new MapRun(2, jobsOf(100_000));
      s.addRun(second);
      expect(second.perJobMs).to.equal(0.5);
      expect(second.perJobBytes).to.equal(100);
      const [sized] = s.nextDispatches();
      expect(size(sized!), 'about targetBatchMs of work, not the ramp from 4').to.equal(8);
      expect(sized!.estimatedBytes).to.equal(800);
    });

    it('keeps a run\'s own measurement over the prior one', () => {
      const s = scheduler({}, [1]);
      const first = new MapRun(1, jobsOf(10));
      s.addRun(first);
      s.observeEncoded(first, 1000, 10);
      const second = new MapRun(2, jobsOf(10));
      second.perJobBytes = 7;
      s.addRun(second);
      expect(second.perJobBytes).to.equal(7);
    });
  });
});

/** Dispatches and answers (the running batch of a busy slot, in full) until nothing is in flight. */
function drainMirror(mirror: SlotMirror): RunView[] {
  const completed: RunView[] = [];
  for (let guard = 0; guard < 100_000; guard++) {
    mirror.dispatch();
    const busy = mirror.busySlots();
    if (busy.length === 0) return completed;
    const batch = mirror.running(busy[0]!)!;
    const outcome = answer(mirror.s, batch);
    settleFailures(outcome);
    completed.push(...outcome.completed);
    mirror.sync();
  }
  throw new Error('drain did not finish');
}

interface RunRecord {
  run: MapRun;
  /** Jobs to feed a lazy run, all of them known up front here. */
  input: number[];
  lazy: boolean;
  fed: number;
  ended: boolean;
  /** Values whose job throws on the worker, for this run. */
  throws: (job: number) => boolean;
  failures: JobFailure[];
  cancelled: boolean;
  completed: number;
}

/**
 * One seeded history of a cluster where slots are lost in every way a SlotLoss names, re-added,
 * and answer in random parts, with stale and duplicate parts, job errors, lazy and windowed runs,
 * settling and fail-fast runs, and runs ended by their caller. At every step: credit, windows and
 * no overlap of unanswered ranges hold. At the end: every index was put at most once (exactly
 * once, as a result or a failure, for every run that finished), every value is its job mapped,
 * every failure is explained by what the simulation did.
 */
function simulateFaults(seed: number): void {
  const { rand, int, pick } = seeded(seed);
  const tuning = randomTuning(rand, int);
  const s = new Scheduler(tuning);
  const mirror = new SlotMirror(s);
  let nextSlot = 1;
  const addSlot = () => mirror.addSlot(nextSlot++);
  for (let i = 1 + int(4); i > 0; i--) addSlot();

  const runCount = 2 + int(3);
  const records: RunRecord[] = [];
  const byRun = new Map<RunView, RunRecord>();
  /** Jobs a 'timeout' loss named, per run. */
  const timedOut = new Map<RunView, Set<number>>();
  const stale: Batch[] = [];
  const context = () => `seed ${seed}, tuning ${JSON.stringify(tuning)}`;

  const apply = (outcome: ResultOutcome) => {
    expect(outcome.malformed, context()).to.equal(undefined);
    for (const failure of outcome.failed) {
      const record = byRun.get(failure.run)!;
      record.failures.push(failure);
      if (!failure.run.options.settle) {
        expect(record.failures, `run ${failure.run.id} failed twice: ${context()}`).to.have.length(1);
        expect(failure.run.status, context()).to.equal('failed');
      }
      const job = failure.run.jobs(failure.jobIndex, failure.jobIndex + 1)[0] as number;
      switch (failure.kind) {
        case 'error':
          expect(record.throws(job), `job ${failure.jobIndex} failed with an error it never threw: ${context()}`).to.equal(true);
          break;
        case 'crash':
          expect(failure.attempts, context()).to.equal(failure.run.options.maxJobRetries + 1);
          expect((failure.run as MapRun).crashes.get(failure.jobIndex), context()).to.equal(failure.attempts);
          break;
        case 'timeout':
          expect(timedOut.get(failure.run)?.has(failure.jobIndex), `job ${failure.jobIndex} never timed out: ${context()}`).to.equal(true);
          break;
      }
    }
    settleFailures(outcome);
    for (const run of outcome.completed) {
      const record = byRun.get(run)!;
      expect(record.completed, `run ${run.id} completed twice: ${context()}`).to.equal(0);
      expect(run.status, context()).to.equal('succeeded');
      record.completed++;
    }
  };

  const addRun = () => {
    const total = rand() < 0.1 ? 0 : 1 + int(250);
    const input = Array.from({ length: total }, () => int(1_000_000));
    const lazy = rand() < 0.35;
    const options: Partial<RunOptions> = {
      settle: rand() < 0.7,
      maxJobRetries: int(4),
      window: rand() < 0.4 ? 1 + int(40) : Infinity,
    };
    const run = countingRun(records.length + 1, lazy ? undefined : input, options);
    if (rand() < 0.5) run.perJobBytes = 1 + int(16);
    const divisor = rand() < 0.5 ? 0 : 20 + int(200);
    const record: RunRecord = {
      run, input, lazy, fed: lazy ? 0 : total, ended: !lazy, failures: [], cancelled: false, completed: 0,
      throws: (job) => divisor > 0 && job % divisor === 0,
    };
    records.push(record);
    byRun.set(run, record);
    apply(s.addRun(run));
  };
  addRun();

  const finished = (r: RunRecord) => r.run.status !== 'running';
  for (let step = 0; ; step++) {
    if (step > 500_000) throw new Error(`simulation stuck: ${context()}`);
    if (records.length === runCount && records.every(finished)) break;

    // Lazy inputs are read while their window has room, and end at some point after the last job.
    for (const record of records) {
      if (!record.lazy || record.ended || finished(record)) continue;
      while (record.run.wantsJobs && record.fed < record.input.length && rand() < 0.7) s.onJobRead(record.run, record.input[record.fed++]);
      expect(record.run.fetched, `run ${record.run.id} read past its window: ${context()}`)
        .to.be.at.most(record.run.lowestUnanswered + record.run.options.window);
      if (record.fed === record.input.length && rand() < 0.3) {
        record.ended = true;
        apply(s.inputEnded(record.run));
      }
    }

    for (const batch of mirror.dispatch()) {
      // White-box: the run's own record, which only the scheduler changes.
      const run = batch.run as MapRun;
      expect(run.status, context()).to.equal('running');
      expect(batch.start, context()).to.be.below(batch.end);
      expect(batch.end, context()).to.be.at.most(run.fetched);
      expect(batch.end, `batch ${batch.id} beyond the window: ${context()}`).to.be.at.most(run.lowestUnanswered + run.options.window);
      expect(batch.start, context()).to.be.at.least(run.lowestUnanswered);
      for (const other of mirror.live) {
        if (other === batch || other.run !== run) continue;
        const overlap = batch.start < other.end && other.start + other.received < batch.end;
        expect(overlap, `batch ${batch.id} overlaps unanswered jobs of batch ${other.id}: ${context()}`).to.equal(false);
      }
    }
    for (const [slot, queue] of mirror.queues) {
      expect(queue.length, `slot ${slot} over its credit: ${context()}`).to.be.at.most(tuning.batchesPerSlot!);
    }

    const roll = rand();
    const slots = [...mirror.queues.keys()];
    if (roll < 0.03 && records.length < runCount) {
      addRun();
    } else if (roll < 0.1 && slots.length > 0) {
      const slot = pick(slots);
      const running = mirror.running(slot);
      const kind = pick(['disconnected', 'crashed', 'timeout', 'retired'] as const);
      let loss: SlotLoss;
      if ((kind === 'crashed' || kind === 'timeout') && running) {
        // The running job is at or after the first unanswered one (finished results may not be flushed yet).
        const jobOffset = running.received + int(size(running) - running.received);
        if (kind === 'timeout') {
          const named = Math.max(running.start + running.received, Math.min(running.end - 1, running.start + jobOffset));
          if (!timedOut.has(running.run)) timedOut.set(running.run, new Set());
          timedOut.get(running.run)!.add(named);
        }
        loss = kind === 'crashed'
          ? { kind, batchId: running.id, jobOffset, ...(rand() < 0.5 ? { error: remoteError('died') } : {}) }
          : { kind, batchId: running.id, jobOffset };
      } else if (kind === 'crashed' || kind === 'timeout') {
        loss = { kind: 'crashed', batchId: 0, jobOffset: 0 };
      } else {
        loss = { kind };
      }
      const { held, outcome } = mirror.lose(slot, loss);
      stale.push(...held);
      apply(outcome);
      // An instance that crashed or timed out comes back under its own slot id.
      if (loss.kind !== 'disconnected' && rand() < 0.5) mirror.addSlot(slot);
    } else if (roll < 0.16 || slots.length === 0) {
      addSlot();
    } else if (roll < 0.2 && stale.length > 0) {
      const b = pick(stale);
      const count = int(size(b) - b.received + 1);
      const outcome = s.onResults(b.id, b.received, Array(count).fill('stale'), undefined, 1, rand() < 0.5);
      expect(outcome, context()).to.deep.equal(NOTHING);
    } else if (roll < 0.23 && mirror.live.length > 0) {
      const b = pick(mirror.live);
      const offset = b.received > 0 && rand() < 0.5 ? int(b.received) : b.received + 1 + int(3);
      const before = b.received;
      const outcome = s.onResults(b.id, offset, ['dup'], undefined, 1, false);
      expect(outcome, context()).to.deep.equal(NOTHING);
      expect(b.received, context()).to.equal(before);
    } else if (roll < 0.235) {
      // The caller stops reading or aborts: the run ends with what it has.
      const open = records.filter((r) => !finished(r));
      if (open.length > 0) {
        const record = pick(open);
        const expected = mirror.live.filter((b) => b.run === record.run);
        const dropped = s.endRun(record.run, 'failed');
        expect(ids(dropped), context()).to.deep.equal(ids(expected));
        record.cancelled = true;
        stale.push(...dropped);
      }
    } else if (mirror.busySlots().length > 0) {
      const slot = pick(mirror.busySlots());
      const queue = mirror.queues.get(slot)!;
      const b = rand() < 0.8 ? queue[0]! : pick(queue);
      const left = size(b) - b.received;
      const count = rand() < 0.4 ? left : int(left + 1);
      const record = byRun.get(b.run)!;
      const errors: [number, SerializedError][] = [];
      b.run.jobs(b.start + b.received, b.start + b.received + count).forEach((job, at) => {
        if (record.throws(job as number)) errors.push([at, remoteError(`threw ${String(job)}`)]);
      });
      // A worker may also end a batch early (final part short of the end): the rest goes back.
      const final = count < left && rand() < 0.1 ? true : undefined;
      apply(answer(s, b, count, { busyMs: rand() * 2, errors, final }));
    }
    mirror.sync();
  }

  expect(mirror.live, context()).to.deep.equal([]);
  expect(s.activeRuns, context()).to.have.length(0);
  for (const record of records) {
    const { run } = record;
    const puts = putsOf(run);
    const label = `run ${run.id} (settle ${run.options.settle}, lazy ${record.lazy}): ${context()}`;
    for (const [index, n] of puts) expect(n, `job ${index} put ${n} times, ${label}`).to.equal(1);
    const values = valuesOf(run);
    const failedAt = new Set(record.failures.map((f) => f.jobIndex));
    expect(failedAt.size, `a job failed twice, ${label}`).to.equal(record.failures.length);
    for (const [index] of puts) {
      const expected = work(record.input[index]);
      if (!run.options.settle) {
        expect(values[index], label).to.equal(expected);
      } else if (failedAt.has(index)) {
        expect((values[index] as Settled<unknown>).status, label).to.equal('rejected');
      } else {
        expect(values[index], label).to.deep.equal({ status: 'fulfilled', value: expected });
      }
    }
    if (record.cancelled) {
      expect(run.status, label).to.equal('failed');
      continue;
    }
    if (run.status === 'failed') {
      expect(run.options.settle, label).to.equal(false);
      expect(record.failures, label).to.have.length(1);
      continue;
    }
    expect(run.status, label).to.equal('succeeded');
    expect(record.completed, label).to.equal(1);
    expect(run.total, label).to.equal(record.input.length);
    expect(run.done, label).to.equal(record.input.length);
    expect(puts.size, `every job answered, ${label}`).to.equal(record.input.length);
    if (!run.options.settle) expect(record.failures, label).to.deep.equal([]);
  }
}

/**
 * A job that takes its whole worker down whenever it is among the jobs the worker is running
 * (a 'disconnected' loss: nobody knows which job did it). Halving must corner it without ever
 * blaming another job; it fails after maxJobRetries+1 crashes while running alone.
 */
function poisonByDisconnect(seed: number, settle: boolean): void {
  const { rand, int } = seeded(1000 + seed);
  const total = 50 + int(200);
  const poison = int(total);
  const maxJobRetries = int(4);
  const tuning: Partial<SchedulerTuning> = { batchesPerSlot: 1 + int(3), chunkSize: rand() < 0.5 ? 1 + int(40) : undefined };
  const s = new Scheduler(tuning);
  const mirror = new SlotMirror(s);
  let nextSlot = 1;
  for (let i = 1 + int(4); i > 0; i--) mirror.addSlot(nextSlot++);
  const run = countingRun(1, jobsOf(total), { settle, maxJobRetries });
  s.addRun(run);
  const context = `seed ${seed}, poison ${poison}, maxJobRetries ${maxJobRetries}, tuning ${JSON.stringify(tuning)}`;
  const failures: JobFailure[] = [];
  const completed: RunView[] = [];
  let soloCrashes = 0;

  for (let step = 0; run.status === 'running'; step++) {
    if (step > 200_000) throw new Error(`stuck: ${context}`);
    mirror.dispatch();
    const busy = mirror.busySlots();
    expect(busy.length, context).to.be.above(0);
    const slot = busy[int(busy.length)]!;
    const running = mirror.running(slot)!;
    const from = running.start + running.received;
    const holdsPoison = from <= poison && poison < running.end;
    let outcome: ResultOutcome;
    if (holdsPoison && rand() < 0.5) {
      // Some results before the poison job may have been flushed before the worker died.
      if (poison > from && rand() < 0.5) {
        const part = answer(s, running, 1 + int(poison - from), { final: false });
        expect(part.failed, context).to.deep.equal([]);
        completed.push(...part.completed);
      }
      // Running alone: the only job left of a suspect or single-job batch. (Left last in an
      // ordinary batch, it is only made a suspect, not yet blamed.)
      const nowFrom = running.start + running.received;
      if (nowFrom === poison && running.end === poison + 1 && (running.suspect || size(running) === 1)) soloCrashes++;
      outcome = mirror.lose(slot, { kind: 'disconnected' }).outcome;
      mirror.addSlot(nextSlot++);
    } else {
      // A worker runs its jobs in order: it answers at most up to the poison job.
      const limit = holdsPoison ? poison - from : running.end - from;
      const count = rand() < 0.5 ? limit : int(limit + 1);
      outcome = answer(s, running, count, { final: count === running.end - from });
    }
    failures.push(...outcome.failed);
    settleFailures(outcome);
    completed.push(...outcome.completed);
    mirror.sync();
    for (const [index] of run.crashes) expect(index, `job ${index} blamed: ${context}`).to.equal(poison);
  }

  expect(failures, context).to.have.length(1);
  expect(failures[0], context).to.include({ run, jobIndex: poison, kind: 'crash', attempts: maxJobRetries + 1 });
  expect(soloCrashes, `crashes while running alone: ${context}`).to.equal(maxJobRetries + 1);
  expect([...run.crashes], context).to.deep.equal([[poison, maxJobRetries + 1]]);
  if (!settle) {
    expect(run.status, context).to.equal('failed');
    for (const [index, n] of putsOf(run)) expect(n, `job ${index}: ${context}`).to.equal(1);
    return;
  }
  // Whatever was still in flight is answered; then every other job has its result, once.
  completed.push(...drainMirror(mirror));
  expect(completed, context).to.deep.equal([run]);
  expect(run.status, context).to.equal('succeeded');
  for (let i = 0; i < total; i++) {
    expect(putsOf(run).get(i), `job ${i}: ${context}`).to.equal(1);
    const value = valuesOf(run)[i] as Settled<unknown>;
    if (i === poison) expect(value.status, context).to.equal('rejected');
    else expect(value, `job ${i}: ${context}`).to.deep.equal({ status: 'fulfilled', value: work(run.jobs(i, i + 1)[0]) });
  }
}

/**
 * A job whose instance dies every time it runs, and the worker says exactly which job it was
 * running ('crashed' with jobOffset): only that job is ever blamed.
 */
function poisonByCrash(maxJobRetries: number, seed: number): void {
  const { rand, int } = seeded(seed);
  const total = 120;
  const poison = 37;
  const s = new Scheduler({ batchesPerSlot: 2, chunkSize: 10 });
  const mirror = new SlotMirror(s);
  for (const id of [1, 2, 3]) mirror.addSlot(id);
  const run = countingRun(1, jobsOf(total), { settle: true, maxJobRetries });
  s.addRun(run);
  const failures: JobFailure[] = [];
  const completed: RunView[] = [];
  let crashes = 0;
  for (let step = 0; run.status === 'running'; step++) {
    if (step > 100_000) throw new Error('stuck');
    mirror.dispatch();
    const busy = mirror.busySlots();
    const slot = busy[int(busy.length)]!;
    const running = mirror.running(slot)!;
    const from = running.start + running.received;
    let outcome: ResultOutcome;
    if (from === poison) {
      crashes++;
      outcome = mirror.lose(slot, { kind: 'crashed', batchId: running.id, jobOffset: poison - running.start, error: remoteError('exit') }).outcome;
      // The instance is replaced and its slot takes work again.
      mirror.addSlot(slot);
    } else {
      const limit = from < poison && poison < running.end ? poison - from : running.end - from;
      outcome = answer(s, running, limit === 0 ? 0 : 1 + int(limit), { final: from + limit === running.end ? undefined : false });
    }
    failures.push(...outcome.failed);
    settleFailures(outcome);
    completed.push(...outcome.completed);
    mirror.sync();
    expect([...run.crashes.keys()].every((index) => index === poison), 'only the poison job is blamed').to.equal(true);
  }
  completed.push(...drainMirror(mirror));
  expect(crashes).to.equal(maxJobRetries + 1);
  expect(failures).to.have.length(1);
  expect(failures[0]).to.include({ jobIndex: poison, kind: 'crash', attempts: maxJobRetries + 1 });
  expect(failures[0]!.error).to.deep.equal(remoteError('exit'));
  expect([...run.crashes]).to.deep.equal([[poison, maxJobRetries + 1]]);
  expect(completed).to.deep.equal([run]);
  expect(run.done).to.equal(total);
  for (let i = 0; i < total; i++) {
    expect(putsOf(run).get(i), `job ${i}`).to.equal(1);
    if (i !== poison) expect(valuesOf(run)[i], `job ${i}`).to.deep.equal({ status: 'fulfilled', value: work(run.jobs(i, i + 1)[0]) });
  }
}

/**
 * A lazy run fed as its window allows, answered out of order by three slots. Checks at each step
 * that nothing is read or dispatched past lowestUnanswered + window and that wantsJobs is false
 * exactly when the window is full; the run completes only once its input has ended.
 */
function lazyWindow(window: number, total: number, seed: number): void {
  const { rand, int } = seeded(seed);
  const s = new Scheduler({ batchesPerSlot: 2 });
  const mirror = new SlotMirror(s);
  for (const id of [1, 2, 3]) mirror.addSlot(id);
  const run = countingRun(1, undefined, { window });
  expect(s.addRun(run)).to.deep.equal(NOTHING);
  let fed = 0;
  let ended = false;
  const completed: RunView[] = [];
  for (let step = 0; run.status === 'running'; step++) {
    if (step > 200_000) throw new Error('stuck');
    const full = run.fetched >= run.lowestUnanswered + window;
    expect(run.wantsJobs, `step ${step}`).to.equal(!ended && !full);
    while (run.wantsJobs && fed < total && rand() < 0.8) s.onJobRead(run, fed++);
    expect(run.fetched).to.be.at.most(run.lowestUnanswered + window);
    if (fed === total && !ended) {
      ended = true;
      completed.push(...s.inputEnded(run).completed);
      continue;
    }
    for (const batch of mirror.dispatch()) {
      expect(batch.end, `batch ${batch.id}`).to.be.at.most(run.lowestUnanswered + window);
      expect(batch.end).to.be.at.most(run.fetched);
    }
    const busy = mirror.busySlots();
    if (busy.length === 0) continue;
    const queue = mirror.queues.get(busy[int(busy.length)]!)!;
    const b = queue[int(queue.length)]!;
    const left = size(b) - b.received;
    const outcome = answer(s, b, rand() < 0.5 ? left : int(left + 1));
    completed.push(...outcome.completed);
    mirror.sync();
  }
  expect(ended, 'complete only after inputEnded').to.equal(true);
  expect(completed).to.deep.equal([run]);
  expect(run.total).to.equal(total);
  expect(valuesOf(run)).to.have.length(total);
  for (let i = 0; i < total; i++) {
    expect(putsOf(run).get(i), `job ${i}`).to.equal(1);
    expect(valuesOf(run)[i], `job ${i}`).to.equal(work(i));
  }
}

describe('Scheduler: regressions found by the fault simulation', () => {
  it('hands the engine the other in-flight batches of a run that fails, so it can cancel them on their workers', () => {
    const s = new Scheduler({ chunkSize: 10, batchesPerSlot: 1 });
    s.addSlot(1);
    s.addSlot(2);
    const failing = new MapRun(1, Array.from({ length: 50 }, (_, i) => i));
    const healthy = new MapRun(2, Array.from({ length: 25 }, (_, i) => i));
    s.addRun(failing);
    s.addRun(healthy);
    const [a, b] = s.nextDispatches();
    expect([a!.run, b!.run]).to.deep.equal([failing, failing]);
    const outcome = s.onResults(a!.id, 0, new Array(10).fill(null), [[0, { name: 'Error', message: 'boom' }]], 1, true);
    expect(outcome.failed.map((f) => f.jobIndex)).to.deep.equal([0]);
    expect(outcome.cancelled.map((batch) => batch.id)).to.deep.equal([b!.id]);
  });

  it('flags error entries that name no job of their part as malformed', () => {
    for (const errors of [[[5, { name: 'E', message: 'x' }]], [[0, { name: 'E', message: 'x' }], [0, { name: 'E', message: 'x' }]], [[-2, { name: 'E', message: 'x' }]]] as [number, { name: string; message: string }][][]) {
      const s = new Scheduler({ chunkSize: 4 });
      s.addSlot(1);
      const run = new MapRun(1, [1, 2, 3, 4, 5, 6, 7, 8], { settle: true });
      s.addRun(run);
      const [batch] = s.nextDispatches();
      expect(s.onResults(batch!.id, 0, ['a', 'b'], errors, 0, false).malformed, JSON.stringify(errors)).to.equal(true);
      expect(run.done).to.equal(0);
    }
  });
});
