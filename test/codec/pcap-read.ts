/**
 * Minimal classic-pcap reader (tcpdump -w output): microsecond or nanosecond magic,
 * either byte order. Returns each record's captured bytes. Test helper only.
 */

/** One captured packet. */
export interface PcapRecord {
  /** Timestamp seconds. */
  tsSec: number;
  /** Timestamp fraction (usec or nsec per the file's magic). */
  tsFrac: number;
  /** Original length on the wire. */
  origLen: number;
  /** Captured bytes (a view into the file buffer). */
  data: Buffer;
}

/** A parsed pcap file. */
export interface Pcap {
  /** Link-layer header type (1 = Ethernet). */
  linkType: number;
  /** Snapshot length. */
  snapLen: number;
  /** Records in file order. */
  records: PcapRecord[];
}

/** Parse a classic pcap file. Throws on a bad magic or a truncated record. */
export function readPcap(file: Buffer): Pcap {
  if (file.length < 24) throw new Error('pcap: file shorter than the global header');
  const magicLE = file.readUInt32LE(0);
  let le: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) le = true;
  else if (file.readUInt32BE(0) === 0xa1b2c3d4 || file.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw new Error(`pcap: bad magic 0x${magicLE.toString(16)}`);
  const u32 = (o: number): number => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  const snapLen = u32(16);
  const linkType = u32(20) & 0xffff;
  const records: PcapRecord[] = [];
  let o = 24;
  while (o < file.length) {
    if (o + 16 > file.length) throw new Error('pcap: truncated record header');
    const inclLen = u32(o + 8);
    if (o + 16 + inclLen > file.length) throw new Error('pcap: truncated record');
    records.push({ tsSec: u32(o), tsFrac: u32(o + 4), origLen: u32(o + 12), data: file.subarray(o + 16, o + 16 + inclLen) });
    o += 16 + inclLen;
  }
  return { linkType, snapLen, records };
}
