/** Public exports of src/codec (re-exported by src/index.ts). */
export * from './addr.js';
