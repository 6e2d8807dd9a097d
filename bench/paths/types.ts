/** What a benchmark path provides to the runner. */
import type { PathId } from '../lib/metrics.js';
import type { BenchBed } from '../lib/testbed.js';

/** Options every path setup receives. */
export interface PathOptions {
  /** Run our daemons under `node --cpu-prof`, profiles into this directory. */
  cpuProfDir?: string;
  /** Directory for logs and generated configuration files. */
  workDir: string;
  /** overlayd --offload for our paths (default auto). */
  offload?: 'auto' | 'off';
  /** More overlayd flags for our paths (bench/stages.ts: --timing). */
  extraArgs?: string[];
  /** Progress logger. */
  log(msg: string): void;
}

/** A configured, running path on a testbed. */
export interface PathInstance {
  /** Long-lived processes whose CPU counts towards the path (name -> pid), besides iperf3. */
  processes(): Record<string, number>;
  /** Our daemons (name -> pid), for peak RSS. Empty for kernel-only paths. */
  daemons(): Record<string, number>;
  /** The configuration applied, as commands or dumps, for the JSON file. */
  config: string[];
  /** Counters or metrics text of our daemons at the end (optional). */
  collectStats?(): Promise<Record<string, string>>;
  /** Stop daemons and undo the configuration (the namespaces are removed separately). */
  stop(): Promise<void>;
  /** CPU profile files written by stop(), when profiling. */
  profiles(): string[];
}

/** A path the benchmark can measure. */
export interface BenchPath {
  /** Path id. */
  id: PathId;
  /** Configure the testbed for this path and start what it needs. */
  setup(bed: BenchBed, opts: PathOptions): Promise<PathInstance>;
}
