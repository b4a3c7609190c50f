// timing.js — how long a run has run and how long it still needs: one definition for every page
// (the runs list's "duration" column and the run page's progress line call these, nothing else).
//
// Both come from the engine (engine/timing.py), which reports with each logged step
//   time/elapsed   — seconds the run has been running: start-up, training, validations,
//                    checkpoints and the final test; never the time it sat queued, nor the time
//                    it sat cancelled before a resume. Its final value is the run's duration.
//   time/remaining — the estimate of the seconds left: the steps left at the run's training
//                    pace, plus the validations still due at their measured mean time, plus the
//                    test at the measured evaluation rate.
// Between two reports a running run's numbers move on with the clock, from the moment this page
// first saw the report. Runs that never reported time/ (a training loop of one's own, whose
// wall_time counter is its real time, or a run recorded before) fall back on wall_time, and their
// ETA on the training steps left alone.

const seen = new Map(); // run id -> {elapsed, at}: when this page first saw the run's latest report

/** Milliseconds since this page first saw the run's latest time/elapsed (0 unless running). */
function sinceReport(run, now) {
  const elapsed = run?.latest?.["time/elapsed"];
  if (run?.status !== "running" || !Number.isFinite(elapsed)) return 0;
  const memo = seen.get(run.id);
  if (!memo || memo.elapsed !== elapsed) {
    seen.set(run.id, { elapsed, at: now });
    return 0;
  }
  return Math.max(0, now - memo.at);
}

/** Seconds the run has been running (see above), or null before its first report. */
export function durationSeconds(run, now = Date.now()) {
  const elapsed = run?.latest?.["time/elapsed"];
  if (Number.isFinite(elapsed)) return elapsed + sinceReport(run, now) / 1000;
  const wall = run?.latest?.wall_time;
  return Number.isFinite(wall) ? wall : null;
}

/** {seconds, basis} left for a running run, or null when it cannot be told yet. */
export function eta(run, now = Date.now()) {
  if (run?.status !== "running") return null;
  const remaining = run.latest?.["time/remaining"];
  if (Number.isFinite(remaining)) {
    return { seconds: Math.max(0, remaining - sinceReport(run, now) / 1000), basis: "with validations and the test" };
  }
  const step = run.progress?.step ?? 0;
  const total = run.progress?.total_steps ?? null;
  const wall = run.latest?.wall_time;
  if (!total || step <= 0 || !Number.isFinite(wall) || wall <= 0) return null;
  return { seconds: ((total - step) * wall) / step, basis: "training steps only" };
}
