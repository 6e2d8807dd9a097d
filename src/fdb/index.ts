/** Public exports of src/fdb (re-exported by src/index.ts). */
export {};
