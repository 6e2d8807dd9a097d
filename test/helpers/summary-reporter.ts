/**
 * Prints the plain closing line CI reads: `N passed, N failed, N skipped`.
 * Counts individual test cases across all files.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      let sawCase = false;
      for (const t of mod.children.allTests()) {
        sawCase = true;
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failed++;
        else skipped++;
      }
      // A file that failed to load (syntax error, failing beforeAll) has no passing cases: count it.
      if (!sawCase && mod.state() === 'failed') failed++;
      else if (mod.errors().length > 0 && mod.state() === 'failed' && failed === 0) failed++;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
