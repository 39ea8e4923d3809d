import { stopAllDaemons } from './helpers/daemon.js';

// Root hook: a daemon left running by a failed test must not outlive the suite.
after(async () => {
  await stopAllDaemons();
});
