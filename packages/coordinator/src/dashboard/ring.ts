/**
 * The newest `capacity` entries of something that happens without bound (batches, errors, output),
 * each numbered in order, so a reader asks for what is newer than the last number it saw and the
 * dashboard's memory and messages stay the same size however long the map.
 */
export class Ring<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;
  #start = 0;
  /** Entries ever pushed; the newest has number `pushed - 1`. */
  pushed = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  push(item: T): void {
    if (this.#items.length < this.#capacity) this.#items.push(item);
    else {
      this.#items[this.#start] = item;
      this.#start = (this.#start + 1) % this.#capacity;
    }
    this.pushed++;
  }

  /** The entries numbered `from` on that are still held, at most the newest `limit`, oldest first. */
  since(from: number, limit = this.#capacity): T[] {
    const held = this.#items.length;
    const first = Math.max(from, this.pushed - held, this.pushed - limit);
    const out: T[] = [];
    for (let n = first; n < this.pushed; n++) out.push(this.#items[(this.#start + n - (this.pushed - held)) % held]!);
    return out;
  }
}
