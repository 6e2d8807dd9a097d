/**
 * Report builder: turns raw per-repetition samples into median (min-max) figures,
 * ratios to kernel VXLAN measured in the same run, goal checks, and the three
 * renderings (terminal table, markdown, SVG bar chart of the ratios).
 *
 * Pure functions of their input, so tests can feed fixed numbers.
 */
import { BASELINE, METRICS, METRIC_KEYS, PATH_LABELS, isOurs, type MetricKey, type PathId } from './metrics.js';
import { summarize, type Summary } from './stats.js';

/** CPU accounting of one measured interval, in clock ticks (USER_HZ) unless noted. */
export interface CpuSample {
  /** utime of the processes involved (iperf3 client and server, our daemons). */
  procUser: number;
  /** stime of the processes involved. */
  procSys: number;
  /** Softirq column of /proc/stat, all CPUs. */
  softirq: number;
  /** utime+stime of the ksoftirqd/N kernel threads. */
  ksoftirqd: number;
  /** Busy time of the whole machine (all /proc/stat columns except idle and iowait). */
  systemBusy: number;
  /** The figure used: CPU seconds attributed to the path (see RunMeta.cpuAccounting). */
  cpuSeconds: number;
  /** Per-process breakdown (name -> utime+stime ticks). */
  perProcess: Record<string, number>;
}

/** One test execution (one repetition of one measurement on one path). */
export interface TestRecord {
  /** Test name: tcp1, tcp4, udp64, udp1400, ping. */
  test: string;
  /** Repetition index, from 0. */
  rep: number;
  /** False when the test failed; `error` says why. */
  ok: boolean;
  /** Failure reason. */
  error?: string;
  /** Measured figures of this execution, in the base units of METRICS plus raw counts. */
  values: Record<string, number>;
  /** CPU accounting over the test (UDP tests). */
  cpu?: CpuSample;
}

/** Top self-time functions of a CPU profile. */
export interface ProfileSummary {
  /** The .cpuprofile file. */
  file: string;
  /** Total sampled time, milliseconds. */
  totalMs: number;
  /** Of which idle (waiting in the event loop), milliseconds. */
  idleMs: number;
  /** Functions by self time, largest first. */
  top: { name: string; location: string; selfMs: number; percent: number }[];
}

/** What the runner measured for one path. */
export interface RawPathResult {
  /** Path id. */
  id: PathId;
  /** Label for tables (defaults to PATH_LABELS[id]). */
  label?: string;
  /** Per-metric samples, one per repetition (NaN for a failed repetition). */
  samples: Partial<Record<MetricKey, number[]>>;
  /** Set when the path could not be measured at all (setup failed). */
  error?: string;
  /** Every test execution, for the JSON file. */
  tests?: TestRecord[];
  /** How the path was configured (commands or a device dump), for the JSON file. */
  config?: string[];
  /** Our daemon's counters or metrics text at the end, for the JSON file. */
  daemonStats?: Record<string, string>;
  /** CPU profiles when run with --cpu-prof. */
  profiles?: ProfileSummary[];
}

/** Where and how the run happened. */
export interface RunMeta {
  /** ISO time the run started. */
  startedAt: string;
  /** ISO time the run ended. */
  finishedAt: string;
  /** The exact command line. */
  command: string;
  /** Machine description. */
  machine: { cpuModel: string; cpus: number; kernel: string; node: string; iperf3: string; memTotalMiB: number };
  /** Options the run used. */
  options: { reps: number; durationS: number; pingCount: number; fastPings?: number; quick: boolean; mtu: number; cpuProf: boolean; sequential: boolean; paths: PathId[]; pacedKpps?: number };
  /** How overlayd was run: 'dist (…)' or 'tsx (…)', or why not. */
  overlayd?: string;
  /** How CPU per packet was computed. */
  cpuAccounting: { irqTimeAccounting: boolean | null; formula: string };
  /** Free-form caveats. */
  notes: string[];
}

/** The raw input of a report. */
export interface RawRun {
  /** Run description. */
  meta: RunMeta;
  /** Per-path results, in measurement order. */
  paths: RawPathResult[];
  /** Micro-benchmark outcomes (`--micro`), by module name. */
  micro?: Record<string, { ok: boolean; error?: string; result?: unknown }>;
}

/** One figure of one path: median (min-max) over repetitions, and its ratio to the baseline. */
export interface Figure extends Summary {
  /** median / baseline median; null without a usable baseline. */
  ratio: number | null;
  /** min / baseline median and max / baseline median (the range of the ratio). */
  ratioRange: [number, number] | null;
}

/** One path in the report. */
export interface PathReport {
  /** Path id. */
  id: PathId;
  /** Label. */
  label: string;
  /** Setup error, when the path was not measured. */
  error?: string;
  /** Figures by metric (absent: not measured / not applicable). */
  figures: Partial<Record<MetricKey, Figure>>;
  /** CPU profiles of our daemons (--cpu-prof). */
  profiles?: ProfileSummary[];
}

/** A goal of issue #7 checked against one path. */
export interface GoalCheck {
  /** Which goal. */
  goal: string;
  /** The path checked. */
  path: PathId;
  /** The value compared with the target (a ratio). */
  value: number | null;
  /** The target, as text. */
  target: string;
  /** Whether the goal is met; null when the figures are missing. */
  met: boolean | null;
  /** How the value was derived. */
  detail: string;
}

/** The finished report: what --json writes (together with the raw run). */
export interface Report {
  /** Run description. */
  meta: RunMeta;
  /** Baseline path id, or null when it was not measured. */
  baseline: PathId | null;
  /** Paths in measurement order. */
  paths: PathReport[];
  /** Goal checks for our paths. */
  goals: GoalCheck[];
}

/** Build the report: summaries, ratios to kernel VXLAN, goal checks. */
export function buildReport(run: RawRun): Report {
  const base = run.paths.find((p) => p.id === BASELINE && !p.error);
  const baseSummaries: Partial<Record<MetricKey, Summary | null>> = {};
  if (base) for (const k of METRIC_KEYS) baseSummaries[k] = summarize(base.samples[k] ?? []);

  const paths: PathReport[] = run.paths.map((p) => {
    const figures: Partial<Record<MetricKey, Figure>> = {};
    for (const k of METRIC_KEYS) {
      const s = summarize(p.samples[k] ?? []);
      if (!s) continue;
      const b = baseSummaries[k];
      const usable = METRICS[k].ratio && b && b.median !== 0 && Number.isFinite(b.median);
      figures[k] = {
        ...s,
        ratio: usable ? s.median / b.median : null,
        ratioRange: usable ? [s.min / b.median, s.max / b.median] : null,
      };
    }
    const out: PathReport = { id: p.id, label: p.label ?? PATH_LABELS[p.id], figures };
    if (p.error) out.error = p.error;
    if (p.profiles?.length) out.profiles = p.profiles;
    return out;
  });
  return { meta: run.meta, baseline: base ? BASELINE : null, paths, goals: checkGoals(paths) };
}

/** The goals of issue #7, checked for each of our paths present in the report. */
export function checkGoals(paths: PathReport[]): GoalCheck[] {
  const out: GoalCheck[] = [];
  const hostgw = paths.find((p) => p.id === 'hostgw');
  const kernel = paths.find((p) => p.id === BASELINE);
  const ours = paths.filter((p) => isOurs(p.id) && !p.error);
  const ratioOf = (p: PathReport, k: MetricKey): number | null => p.figures[k]?.ratio ?? null;
  const judge = (v: number | null, ok: (x: number) => boolean): boolean | null => (v === null ? null : ok(v));

  for (const p of ours) {
    for (const k of ['tcp1', 'tcp4'] as const) {
      const v = ratioOf(p, k);
      out.push({ goal: `TCP throughput ≥ half of kernel VXLAN (${METRICS[k].label})`, path: p.id, value: v, target: '≥ 0.50', met: judge(v, (x) => x >= 0.5), detail: `${k} median / kernel-vxlan median` });
    }
    if (p.id.startsWith('udp-')) {
      for (const k of ['tcp1', 'tcp4'] as const) {
        const v = ratioOf(p, k);
        out.push({ goal: `UDP backend beats flannel's UDP/VXLAN ratio (~0.6) (${METRICS[k].label})`, path: p.id, value: v, target: '> 0.60', met: judge(v, (x) => x > 0.6), detail: `${k} median / kernel-vxlan median` });
      }
    }
    // Added RTT: the RTT over host-gw that the overlay adds, ours against the kernel's.
    const rp = p.figures.rttP50?.median;
    const rk = kernel?.figures.rttP50?.median;
    const rh = hostgw?.figures.rttP50?.median;
    if (rp !== undefined && rk !== undefined && rh !== undefined && rk - rh > 0) {
      const v = (rp - rh) / (rk - rh);
      out.push({ goal: 'added RTT (p50, over host-gw) within 2x the kernel’s', path: p.id, value: v, target: '≤ 2.00', met: v <= 2, detail: `(${rp.toFixed(1)} − ${rh.toFixed(1)}) / (${rk.toFixed(1)} − ${rh.toFixed(1)}) µs` });
    }
    for (const k of ['rttP50', 'rttP99'] as const) {
      const v = ratioOf(p, k);
      out.push({ goal: `RTT within 2x the kernel’s (${METRICS[k].label})`, path: p.id, value: v, target: '≤ 2.00', met: judge(v, (x) => x <= 2), detail: `${k} median / kernel-vxlan median` });
    }
    for (const k of ['cpuPerPkt64', 'cpuPerPkt1400', 'cpuPerPktPaced'] as const) {
      const v = ratioOf(p, k);
      out.push({ goal: `CPU per packet within 3x the kernel’s (${METRICS[k].label})`, path: p.id, value: v, target: '≤ 3.00', met: judge(v, (x) => x <= 3), detail: `${k} median / kernel-vxlan median` });
    }
    // issue #11 (offloads)
    {
      const v = ratioOf(p, 'udp1400pps');
      out.push({ goal: 'UDP 1400 B receive rate ≥ 0.8x kernel VXLAN (#11)', path: p.id, value: v, target: '≥ 0.80', met: judge(v, (x) => x >= 0.8), detail: 'udp1400pps median / kernel-vxlan median' });
      const c = ratioOf(p, 'cpuPerByteTcp');
      out.push({ goal: 'CPU per byte (TCP) within 2x kernel VXLAN (#11)', path: p.id, value: c, target: '≤ 2.00', met: judge(c, (x) => x <= 2), detail: 'cpuPerByteTcp median / kernel-vxlan median' });
      for (const k of ['udp64loss', 'udp1400loss'] as const) {
        const lp = p.figures[k]?.median;
        const lk = kernel?.figures[k]?.median;
        const d = lp === undefined || lk === undefined ? null : lp - lk;
        out.push({ goal: `loses no more than kernel VXLAN at the same offered load (${METRICS[k].label}, #11)`, path: p.id, value: d, target: '≤ 0 points', met: judge(d, (x) => x <= 0), detail: `${k} median − kernel-vxlan median (percentage points)` });
      }
    }
    // issue #12 (latency), on the figures of the latency section
    const latencyGoals: [MetricKey, string, number][] = [['rttLoadP50', 'RTT p50 under TCP load within 1.5x', 1.5], ['rttLoadP99', 'RTT p99 under TCP load within 2x', 2], ['rrRate', 'request/response rate ≥ 0.7x', 0.7]];
    for (const [k, goal, t] of latencyGoals) {
      const v = ratioOf(p, k);
      const higher = METRICS[k].better === 'higher';
      out.push({ goal: `${goal} kernel VXLAN (#12)`, path: p.id, value: v, target: `${higher ? '≥' : '≤'} ${t.toFixed(2)}`, met: judge(v, (x) => (higher ? x >= t : x <= t)), detail: `${k} median / kernel-vxlan median` });
    }
  }
  return out;
}

/** Metrics that have at least one figure in the report, in canonical order. */
function presentMetrics(r: Report): MetricKey[] {
  return METRIC_KEYS.filter((k) => r.paths.some((p) => p.figures[k]));
}

/** "12.3 [11.9-12.8] x0.51" style cell. */
function cell(f: Figure | undefined, k: MetricKey, withRange: boolean, md: boolean): string {
  if (!f) return md ? '–' : '-';
  const fmt = METRICS[k].format;
  const range = withRange && f.n > 1 ? (md ? ` (${fmt(f.min)}–${fmt(f.max)})` : ` [${fmt(f.min)}-${fmt(f.max)}]`) : '';
  const ratio = f.ratio === null ? '' : md ? ` ×${f.ratio.toFixed(2)}` : ` x${f.ratio.toFixed(2)}`;
  return md ? `**${fmt(f.median)}**${range}${ratio}` : `${fmt(f.median)}${range}${ratio}`;
}

/** Plain-text table for the terminal: one row per metric, one column per path. */
export function renderTable(r: Report): string {
  const keys = presentMetrics(r);
  const header = ['metric', ...r.paths.map((p) => p.id)];
  const rows: string[][] = keys.map((k) => [`${METRICS[k].label} (${METRICS[k].unit})`, ...r.paths.map((p) => cell(p.figures[k], k, true, false))]);
  const errs = r.paths.filter((p) => p.error);
  const all = [header, ...rows];
  const w = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  const sep = w.map((n) => '-'.repeat(n)).join('  ');
  const out = [line(header), sep, ...rows.map(line)];
  out.push('', `median [min-max] over ${r.meta.options.reps} run(s); xN = ratio to ${r.baseline ?? 'kernel-vxlan (not measured: no ratios)'} in this run`);
  for (const p of errs) out.push(`${p.id}: NOT MEASURED: ${p.error}`);
  if (r.goals.length) {
    out.push('', 'goals (issues #7, #11 and #12):');
    for (const g of r.goals) out.push(`  [${g.met === null ? ' ? ' : g.met ? 'met' : 'NOT'}] ${g.path}: ${g.goal}: ${g.value === null ? 'n/a' : g.value.toFixed(2)} (target ${g.target})`);
  }
  return out.join('\n');
}

/** One line of text safe inside markdown (and a table cell), cut to `max` characters. */
function mdText(s: string, max: number): string {
  const one = s.replace(/\s+/g, ' ').replace(/\|/g, '\\|');
  return one.length > max ? one.slice(0, max - 1) + '…' : one;
}

/** Markdown: run description, the table (metrics x paths), goal checks. */
export function renderMarkdown(r: Report): string {
  const keys = presentMetrics(r);
  const m = r.meta;
  const out: string[] = [];
  out.push(`### Overlay comparison: ratios to kernel VXLAN in the same run`, '');
  out.push(`Command: \`${m.command}\`  `);
  out.push(`Machine: ${m.machine.cpuModel}, ${m.machine.cpus} CPUs, ${m.machine.memTotalMiB} MiB, Linux ${m.machine.kernel}, Node ${m.machine.node}, ${m.machine.iperf3}  `);
  out.push(`Run: ${m.startedAt} → ${m.finishedAt}; ${m.options.reps} repetition(s) of ${m.options.durationS}s tests, ${m.options.pingCount} pings per RTT sample${m.options.fastPings ? ` (${m.options.fastPings} per fast sample)` : ''}, underlay MTU ${m.options.mtu}${m.overlayd ? `; overlayd ran from ${m.overlayd}` : ''}${m.options.cpuProf ? '; **our daemons ran under --cpu-prof (slower)**' : ''}`, '');
  out.push(`| metric | ${r.paths.map((p) => p.label).join(' | ')} |`);
  out.push(`|---|${r.paths.map(() => '---:').join('|')}|`);
  for (const k of keys) {
    const def = METRICS[k];
    out.push(`| ${def.label} (${def.unit}, ${def.better} is better) | ${r.paths.map((p) => cell(p.figures[k], k, true, true)).join(' | ')} |`);
  }
  out.push('', `Cells: **median** (min–max) over repetitions, ×ratio to ${r.baseline ? 'kernel VXLAN' : '— (kernel VXLAN not measured)'}.`);
  for (const p of r.paths.filter((x) => x.error)) out.push(`- ${p.label}: not measured: ${mdText(p.error ?? '', 400)}`);
  if (r.goals.length) {
    out.push('', '| goal | path | value | target | met |', '|---|---|---:|---:|:---:|');
    for (const g of r.goals) out.push(`| ${g.goal} | ${g.path} | ${g.value === null ? '–' : g.value.toFixed(2)} | ${g.target} | ${g.met === null ? '?' : g.met ? 'yes' : 'no'} |`);
  }
  const profiled = r.paths.filter((p) => p.profiles?.length);
  if (profiled.length) {
    out.push('', 'CPU profiles of our daemons under load (`node --cpu-prof`, event-loop thread, self time as % of non-idle time):', '');
    for (const p of profiled) {
      for (const prof of p.profiles ?? []) {
        const busy = prof.totalMs - prof.idleMs;
        const host = prof.file.split('/').slice(-2, -1)[0] ?? p.id;
        out.push(`- ${host} (${busy.toFixed(0)} ms busy of ${prof.totalMs.toFixed(0)} ms): ` + prof.top.filter((t) => t.name !== '(idle)').slice(0, 6).map((t) => `${mdText(t.name, 40)} ${busy > 0 ? ((100 * t.selfMs) / busy).toFixed(0) : 0}%${t.location ? ` (\`${mdText(t.location, 60)}\`)` : ''}`).join(', '));
      }
    }
  }
  out.push('', `CPU per packet: ${m.cpuAccounting.formula}`);
  for (const n of m.notes) out.push(`- ${n}`);
  return out.join('\n') + '\n';
}

/** Chart colours per path. */
const COLORS: Record<PathId, string> = {
  hostgw: '#8c8c8c',
  'kernel-vxlan': '#2ca02c',
  floor: '#bcbd22',
  'vxlan-dgram': '#1f77b4',
  'vxlan-mmsg': '#6baed6',
  'udp-dgram': '#d62728',
  'udp-mmsg': '#ff9896',
  'kernel-vxlan6': '#98df8a',
  'vxlan6-mmsg': '#9467bd',
  'udp6-mmsg': '#e377c2',
};

/** Where the goals of issues #7 and #12 put a ratio (drawn as a dashed line on the chart). */
const GOAL_LINES: Partial<Record<MetricKey, number>> = { tcp1: 0.5, tcp4: 0.5, rttP50: 2, rttP99: 2, rttLoadP50: 1.5, rttLoadP99: 2, rrRate: 0.7, cpuPerPkt64: 3, cpuPerPkt1400: 3, cpuPerPktPaced: 3 };

/** Escape text for XML. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * SVG bar chart of the ratios (hand-written, no dependencies): one group per charted
 * metric, one horizontal bar per non-baseline path, drawn from 1.0 on a log scale,
 * with a whisker for the min-max range.
 */
export function renderSvg(r: Report): string {
  const keys = presentMetrics(r).filter((k) => METRICS[k].chart && r.paths.some((p) => p.id !== r.baseline && p.figures[k]?.ratio != null));
  const bars = r.paths.filter((p) => p.id !== r.baseline);
  const W = 980, left = 200, right = 40, top = 96, barH = 13, gap = 3, groupGap = 22;
  const plotW = W - left - right;
  let lo = 0.5, hi = 2;
  for (const p of bars) for (const k of keys) {
    const f = p.figures[k];
    if (f?.ratio == null || !f.ratioRange) continue;
    for (const v of [f.ratio, ...f.ratioRange]) if (v > 0 && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  lo = Math.max(lo / 1.7, 1 / 1024);
  hi = Math.min(hi * 1.7, 1024);
  const x = (v: number): number => left + ((Math.log2(Math.min(Math.max(v, lo), hi)) - Math.log2(lo)) / (Math.log2(hi) - Math.log2(lo))) * plotW;
  const groupH = bars.length * (barH + gap) + 18;
  const H = top + Math.max(1, keys.length) * (groupH + groupGap) + 40;
  const o: string[] = [];
  const m = r.meta;
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  o.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${xmlEscape('Ratio to kernel VXLAN (flannel.1) measured in the same run')}</text>`);
  o.push(`<text x="${W / 2}" y="37" text-anchor="middle" fill="#555">${xmlEscape(`log scale; bar = median of ${m.options.reps} run(s), whisker = min–max; ${m.machine.cpus} CPUs, ${m.options.durationS}s tests`)}</text>`);
  // Legend: paths on one row, the reference lines on the next.
  let lx = 20;
  for (const p of bars) {
    o.push(`<rect x="${lx}" y="48" width="12" height="12" fill="${COLORS[p.id]}"/>`);
    o.push(`<text x="${lx + 16}" y="58">${xmlEscape(p.label)}</text>`);
    lx += 34 + p.label.length * 6.8;
  }
  o.push(`<line x1="20" y1="67" x2="20" y2="79" stroke="#000" stroke-width="1.5"/>`);
  o.push(`<text x="26" y="77">kernel VXLAN = 1×</text>`);
  o.push(`<line x1="150" y1="73" x2="164" y2="73" stroke="#e6550d" stroke-width="2" stroke-dasharray="4 2"/>`);
  o.push(`<text x="168" y="77">goals of issues #7, #12 (TCP ≥ 0.5×, RTT ≤ 2×, loaded p50 ≤ 1.5×, TCP_RR ≥ 0.7×, CPU/packet ≤ 3×)</text>`);
  const plotTop = top, plotBottom = H - 40;
  // Grid and ticks.
  const ticks = [1 / 256, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32, 64, 128, 256].filter((t) => t >= lo && t <= hi);
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    o.push(`<line x1="${tx}" y1="${plotTop}" x2="${tx}" y2="${plotBottom}" stroke="${t === 1 ? '#000' : '#ddd'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`);
    const lbl = t >= 1 ? `${t}×` : `1/${Math.round(1 / t)}×`;
    o.push(`<text x="${tx}" y="${plotBottom + 16}" text-anchor="middle" fill="#333">${lbl}</text>`);
  }
  let y = plotTop;
  if (keys.length === 0) o.push(`<text x="${W / 2}" y="${plotTop + 20}" text-anchor="middle">${xmlEscape(r.baseline ? 'no figures to chart' : 'kernel VXLAN not measured: no ratios')}</text>`);
  for (const k of keys) {
    const def = METRICS[k];
    o.push(`<text x="10" y="${y + 12}" font-weight="bold">${xmlEscape(def.short)}</text>`);
    o.push(`<text x="10" y="${y + 26}" fill="#666" font-size="11">${xmlEscape(`${def.better} is better`)}</text>`);
    let by = y + 4;
    const goal = GOAL_LINES[k];
    if (goal !== undefined && goal >= lo && goal <= hi) {
      const gx = x(goal).toFixed(1);
      o.push(`<line x1="${gx}" y1="${y}" x2="${gx}" y2="${y + bars.length * (barH + gap) + 6}" stroke="#e6550d" stroke-width="2" stroke-dasharray="4 2"><title>${xmlEscape(`goal: ${goal}×`)}</title></line>`);
    }
    for (const p of bars) {
      const f = p.figures[k];
      if (f?.ratio != null) {
        const x1 = x(1), x2 = x(f.ratio);
        o.push(`<rect x="${Math.min(x1, x2).toFixed(1)}" y="${by}" width="${Math.max(1, Math.abs(x2 - x1)).toFixed(1)}" height="${barH}" fill="${COLORS[p.id]}"><title>${xmlEscape(`${p.label}: ${def.short} ${f.ratio.toFixed(3)}× (${def.format(f.median)} ${def.unit})`)}</title></rect>`);
        if (f.ratioRange && f.n > 1) {
          const cy = (by + barH / 2).toFixed(1);
          o.push(`<line x1="${x(f.ratioRange[0]).toFixed(1)}" y1="${cy}" x2="${x(f.ratioRange[1]).toFixed(1)}" y2="${cy}" stroke="#222" stroke-width="1"/>`);
        }
        const reach = f.ratioRange && f.n > 1 ? (f.ratio >= 1 ? Math.max(x2, x(f.ratioRange[1])) : Math.min(x2, x(f.ratioRange[0]))) : x2;
        const tx = f.ratio >= 1 ? reach + 4 : reach - 4;
        o.push(`<text x="${tx.toFixed(1)}" y="${by + barH - 2}" text-anchor="${f.ratio >= 1 ? 'start' : 'end'}" font-size="11">${f.ratio.toFixed(2)}×</text>`);
      } else if (p.error) {
        o.push(`<text x="${(x(1) + 4).toFixed(1)}" y="${by + barH - 2}" font-size="10" fill="#999">${xmlEscape(`${p.label}: not measured`)}</text>`);
      }
      by += barH + gap;
    }
    y += groupH + groupGap;
  }
  o.push(`<text x="${W - 6}" y="${H - 6}" text-anchor="end" fill="#888" font-size="10">${xmlEscape(`${m.command} · ${m.startedAt} · ${m.machine.cpuModel}`)}</text>`);
  o.push('</svg>');
  return o.join('\n') + '\n';
}
