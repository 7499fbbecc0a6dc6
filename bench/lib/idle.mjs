// Keep idle cores out of deep idle states for the length of a run.
//
// A core that a proxy leaves idle between two events halts. On a virtual
// machine the hypervisor then takes the core's thread off the host CPU, so
// waking it for the next event or timer costs tens to hundreds of
// microseconds. On the machine of bench/RESULTS.md a timer of a halted core
// fired up to 8 ms late. That cost is the machine's, paid by every
// contender, and it hides the proxies' own microseconds.
//
// Writing 0 to /dev/cpu_dma_latency asks the kernel to keep every core in
// its polling idle state for as long as the file stays open, as latency
// tuning profiles do. The request ends when the file is closed, also when
// bench/run dies.

import fs from 'node:fs';

const DEVICE = '/dev/cpu_dma_latency';

// Make the request and keep the file open. Returns { held, reason,
// release() }, where reason gives why the request failed (no device, no
// permission).
export function holdPollingIdle() {
  let fd;
  try {
    fd = fs.openSync(DEVICE, 'w');
    const zero = Buffer.alloc(4);
    zero.writeInt32LE(0);
    fs.writeSync(fd, zero);
  } catch (e) {
    if (fd !== undefined)
      fs.closeSync(fd);
    return { held: false, reason: `${DEVICE}: ${e.code ?? e.message}`, release() {} };
  }
  return {
    held: true, reason: null,
    release() {
      if (fd !== undefined)
        fs.closeSync(fd);
      fd = undefined;
    },
  };
}
