// timing.js — how long a run trained and how long it still needs, from what the run measured.
// One definition for every page: "duration" is trained time (the engine's wall_time counter,
// which leaves out the time a run sat queued, cancelled or evaluating), and the ETA counts the
// evaluations and the start-up/shutdown the run has shown so far, not only its training steps.

import { parseTime } from "./api.js";

/** Seconds of training (the latest `wall_time` counter), or null before the first report. */
export function trainedSeconds(run) {
  const t = run?.latest?.wall_time;
  return Number.isFinite(t) ? t : null;
}

/**
 * Seconds until a running run ends, or null when it cannot be told yet.
 *
 * The training left is (total − step) × trained seconds per step. This attempt's real time
 * (start to its last report, `heartbeat_at`) is longer than its trained time by what the run
 * spent evaluating, starting up and writing checkpoints: the estimate scales the training left by
 * that measured ratio, then takes off the time since the last report. A resumed run's start lies
 * before the time it sat cancelled, so its ratio cannot be measured: it gets the training left
 * alone (and says so through `eta.basis`).
 */
export function eta(run, now = Date.now()) {
  const step = run?.progress?.step ?? 0;
  const total = run?.progress?.total_steps ?? null;
  const trained = trainedSeconds(run);
  if (run?.status !== "running" || !total || step <= 0 || !trained) return null;
  const training = ((total - step) * trained) / step;
  const start = parseTime(run.started_at);
  const reported = parseTime(run.heartbeat_at);
  if (run.attempt || start === null || reported === null || reported <= start) {
    return { seconds: training, basis: "training steps only" };
  }
  const ratio = Math.max(1, (reported - start) / 1000 / trained);
  return { seconds: Math.max(0, training * ratio - (now - reported) / 1000), basis: "with evaluation and start-up" };
}
