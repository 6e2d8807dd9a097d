/** The benchmark's paths by id. */
import type { PathId } from '../lib/metrics.js';
import { floorPath } from './floor.js';
import { kernelVxlanPath } from './kernel.js';
import { overlaydPath } from './overlayd.js';
import { kernelVxlanPathOf } from './kernel.js';
import { libraryPath } from './library.js';
import type { BenchPath } from './types.js';

export type { BenchPath, PathInstance, PathOptions } from './types.js';

/** Every path, keyed by id. */
export const PATHS: Record<PathId, BenchPath> = {
  hostgw: overlaydPath('hostgw'),
  'kernel-vxlan': kernelVxlanPath,
  floor: floorPath,
  'vxlan-dgram': overlaydPath('vxlan-dgram'),
  'vxlan-mmsg': overlaydPath('vxlan-mmsg'),
  'udp-dgram': overlaydPath('udp-dgram'),
  'udp-mmsg': overlaydPath('udp-mmsg'),
  'kernel-vxlan6': kernelVxlanPathOf('kernel-vxlan6', 6),
  'vxlan6-mmsg': libraryPath('vxlan6-mmsg', 'vxlan'),
  'udp6-mmsg': libraryPath('udp6-mmsg', 'udp'),
};
