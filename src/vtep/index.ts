/** Public exports of src/vtep (re-exported by src/index.ts). */
export * from './backend.js';
