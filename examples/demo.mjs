// The README's example: two local workers, results in job order.
import { Processor, WorkFunction } from 'mapscale';

class Power extends WorkFunction {
  constructor(power) {
    super();
    this.power = power; // runs once, in the app; shipped to every worker
  }
  async setup() {
    // once per worker instance, where it lives: open files, load caches
  }
  call(x) {
    return x ** this.power;
  }
  async cleanup() {
    // once per worker instance, at shutdown
  }
}

const mapper = new Processor(new Power(2), 2);
try {
  console.log('squares:', await mapper.map([0, 1, 2, 3, 4]));
  console.log('again, same workers:', await mapper.map([5, 6, 7]));
} finally {
  await mapper.shutdown();
}
