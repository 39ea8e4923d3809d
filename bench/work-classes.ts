import { WorkFunction } from 'mapscale';

/**
 * W4 for MapScale: a work function with an expensive setup (think: loading a model), paid once
 * per worker instance and never per map. The wait is a timer, not CPU, so it measures how setup
 * is scheduled rather than how fast this machine spins. Shipped by value: keep it self-contained.
 */
export class SetupSquare extends WorkFunction<number, number> {
  setupMs: number;

  constructor(setupMs: number) {
    super();
    this.setupMs = setupMs;
  }

  override async setup(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.setupMs));
  }

  call(x: number): number {
    return x * x;
  }
}
