/** Public exports of src/tun (re-exported by src/index.ts). */
export * from './types.js';
