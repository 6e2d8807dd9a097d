/** Public exports of src/overlayd (re-exported by src/index.ts). */
export {};
