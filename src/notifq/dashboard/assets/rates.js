// The data of a rate chart, and its figures: messages finished per second over a whole run, in buckets.
//
// It always covers the whole run, from its start to now (or to its end): when that needs more than MAX_BUCKETS
// buckets, they are merged in pairs (twice as wide), so a long campaign keeps its start and a tab left open for
// days stays small. Data comes from the campaign's timeline endpoint (`seed`: the server's buckets of the
// messages' own finish times, with attempts and retries) and is extended live (`addSpan`: counts that arrived
// between two updates, spread over the time between them).
//
// Peak, everywhere: the busiest bucket, in messages finished per second. A finished campaign is seeded again
// from the timeline once it has finished, so every view of it (watched live from the start, opened mid-run,
// reloaded) has the same buckets and the same Peak. Average: everything over the run's start to its end (or now).

const MIN_WINDOW = 30; // buckets always shown, so a young campaign's first bars are not a full-width block
const MAX_BUCKETS = 600; // beyond this the buckets are merged in pairs (see fit)

export class RateBuckets {
  constructor() {
    this.skewMs = 0; // server time minus browser time
    this.skewBounds = null; // what the Date headers so far allow the skew to be
    this.startMs = null; // the run's start: the left edge
    this.endMs = null; // the run's end: the right edge stops moving with the clock
    this.reset();
  }

  /** Forget all data (a new run); the start and end are kept until set again. */
  reset() {
    this.bucketMs = 1000;
    this.originMs = 0; // bucket k covers [origin + k·width, origin + (k+1)·width)
    this.buckets = new Map(); // bucket index -> {sent, failed, attempts, retried}
    this.oldest = Infinity;
    this.newest = -Infinity;
    this.detailUntilMs = null; // attempts and retries are known up to here (the last seed); null: not at all
    this.detail = { attempts: false, retried: false }; // which of the two the seeded points carry
    this.seededAtMs = null; // live counts are added after this instant only (the seed holds what came before)
    this.schedule();
  }

  /**
   * The server's clock from a response Date header, so live and seeded buckets line up. The header has whole
   * seconds: the server's time at the answer lies in [date, date + 1 s), so each answer bounds the skew, and the
   * bounds of successive answers are intersected. The estimate (the middle) then settles instead of jumping by up
   * to a second with each answer; bounds that no longer meet (a clock was set) start again.
   */
  setServerDate(dateHeader) {
    const server = Date.parse(dateHeader || '');
    if (Number.isNaN(server)) return;
    const now = Date.now();
    let [lo, hi] = [server - now, server + 1000 - now];
    if (this.skewBounds && this.skewBounds[0] < hi && lo < this.skewBounds[1]) {
      lo = Math.max(lo, this.skewBounds[0]);
      hi = Math.min(hi, this.skewBounds[1]);
    }
    this.skewBounds = [lo, hi];
    this.skewMs = (lo + hi) / 2;
  }

  now() {
    return Date.now() + this.skewMs;
  }

  key(atMs) {
    return Math.floor((atMs - this.originMs) / this.bucketMs);
  }

  timeOf(key) {
    return this.originMs + key * this.bucketMs;
  }

  /**
   * Replace the data with the timeline endpoint's points (read at server time `atMs`). Points may carry
   * `attempts` and `retried`. Returns the totals it holds, {sent, failed}: live counts continue from there.
   */
  seed(bucketSeconds, points, atMs = this.now()) {
    this.reset();
    this.bucketMs = Math.max(1, Number(bucketSeconds) || 1) * 1000;
    const list = points || [];
    const first = list.length ? Date.parse(list[0].at) : NaN;
    this.originMs = Number.isNaN(first) ? 0 : first; // the server's bins start at its first point
    const totals = { sent: 0, failed: 0 };
    for (const p of list) {
      const at = Date.parse(p.at);
      if (Number.isNaN(at)) continue;
      const extra = { attempts: Number(p.attempts) || 0, retried: Number(p.retried) || 0 };
      if (p.attempts !== undefined) this.detail.attempts = true;
      if (p.retried !== undefined) this.detail.retried = true;
      this.put(this.key(at), Number(p.sent) || 0, Number(p.failed) || 0, extra);
      totals.sent += Number(p.sent) || 0;
      totals.failed += Number(p.failed) || 0;
    }
    this.detailUntilMs = this.detail.attempts || this.detail.retried ? atMs : null;
    this.seededAtMs = atMs;
    this.fit();
    this.schedule();
    return totals;
  }

  /** Count `sent` and `failed` completions at server time `atMs` (default: now). */
  add(atMs, sent, failed) {
    if (!(sent > 0 || failed > 0)) return;
    const at = atMs ?? this.now();
    if (Number.isNaN(at)) return;
    this.put(this.key(at), sent, failed);
    this.fit();
    this.schedule();
  }

  /**
   * Count completions that happened between two updates (server times): spread evenly over that time,
   * so updates arriving in uneven steps (every 0.5 s, give or take) do not draw uneven bars. Nothing is
   * put before the last seed, which already holds what finished before it was read.
   */
  addSpan(fromMs, toMs, sent, failed) {
    if (!(sent > 0 || failed > 0) || Number.isNaN(toMs)) return;
    let from = fromMs ?? toMs;
    if (this.seededAtMs !== null) from = Math.max(from, this.seededAtMs);
    const to = Math.max(toMs, from);
    if (!(to > from)) return this.add(to, sent, failed);
    const total = to - from;
    for (let t = from; t < to; ) {
      const k = this.key(t);
      const edge = Math.min(to, this.timeOf(k + 1));
      const share = (edge - t) / total;
      this.put(k, sent * share, failed * share);
      t = edge;
    }
    this.fit();
    this.schedule();
  }

  put(key, sent, failed, extra = null) {
    const bucket = this.buckets.get(key) || { sent: 0, failed: 0, attempts: 0, retried: 0 };
    bucket.sent += sent;
    bucket.failed += failed;
    if (extra) {
      bucket.attempts += extra.attempts;
      bucket.retried += extra.retried;
    }
    this.buckets.set(key, bucket);
    if (key < this.oldest) this.oldest = key;
    if (key > this.newest) this.newest = key;
  }

  /**
   * The window of bucket indexes [first, last]: from the run's start (or the oldest data) to now, or to its end.
   * A young run is shown in at least MIN_WINDOW buckets, filling from the left; a finished one exactly.
   */
  window() {
    const lastKey = this.key(this.endMs ?? this.now());
    let first = this.startMs === null ? Infinity : this.key(this.startMs);
    if (this.oldest < first) first = this.oldest;
    if (first === Infinity) first = lastKey - MIN_WINDOW + 1; // nothing known yet: the last MIN_WINDOW buckets
    const last = Math.max(lastKey, this.newest);
    return [first, this.finished ? last : Math.max(last, first + MIN_WINDOW - 1)];
  }

  /**
   * Merge buckets in pairs until the whole run fits in MAX_BUCKETS: it always covers the run from its start,
   * and a tab left open for days keeps a few hundred buckets, not one per second for ever.
   */
  fit() {
    for (;;) {
      const [first, last] = this.window();
      if (last - first + 1 <= MAX_BUCKETS) return;
      const merged = new Map();
      for (const [k, b] of this.buckets) {
        const into = Math.floor(k / 2);
        const m = merged.get(into);
        if (m) {
          m.sent += b.sent;
          m.failed += b.failed;
          m.attempts += b.attempts;
          m.retried += b.retried;
        } else merged.set(into, { ...b });
      }
      this.buckets = merged;
      this.bucketMs *= 2;
      this.oldest = Math.floor(this.oldest / 2);
      this.newest = Math.floor(this.newest / 2);
    }
  }

  /** Stop (or with null, resume) moving the right edge with the clock: the run's end. */
  freeze(atMs) {
    const value = atMs === null || Number.isNaN(atMs) ? null : atMs;
    if (value === this.endMs) return;
    this.endMs = value;
    this.fit();
    this.schedule();
  }

  /** The run's start (a campaign's creation or due time): the chart's left edge. */
  setStart(atMs) {
    const value = atMs === null || Number.isNaN(atMs) ? null : atMs;
    if (value === this.startMs) return;
    this.startMs = value;
    this.fit();
    this.schedule();
  }

  get finished() {
    return this.endMs !== null;
  }

  /** The busiest bucket, in messages finished per second (the one definition of Peak). */
  peak() {
    let most = 0;
    for (const b of this.buckets.values()) most = Math.max(most, b.sent + b.failed);
    return most / (this.bucketMs / 1000);
  }

  totals() {
    const t = { sent: 0, failed: 0, attempts: 0, retried: 0 };
    for (const b of this.buckets.values()) {
      t.sent += b.sent;
      t.failed += b.failed;
      t.attempts += b.attempts;
      t.retried += b.retried;
    }
    return t;
  }

  /** Messages finished per second over the whole run: everything, over start to end (or now). */
  average() {
    const t = this.totals();
    const seconds = this.runSeconds();
    return seconds > 0 ? (t.sent + t.failed) / seconds : 0;
  }

  /** The run's length so far: from its start (or the oldest data) to its end (or now). */
  runSeconds() {
    const start = this.startMs ?? (this.oldest === Infinity ? null : this.timeOf(this.oldest));
    return start === null ? 0 : Math.max(0, ((this.endMs ?? this.now()) - start) / 1000);
  }

  /**
   * Average messages/s over the last `seconds` (at least one bucket), ignoring the bucket still filling.
   * When the activity began inside that window, only the time since then counts (a campaign 3 s old
   * sending 80/s is at 80/s, not 24/s).
   */
  rate(seconds = 10) {
    const last = this.key(this.endMs ?? this.now()) - 1;
    const n = this.rateBuckets(seconds);
    let total = 0;
    let first = null;
    for (let k = last - n + 1; k <= last; k += 1) {
      const b = this.buckets.get(k);
      if (b && b.sent + b.failed > 0) {
        total += b.sent + b.failed;
        if (first === null) first = k;
      }
    }
    if (first === null) return 0;
    const span = this.oldest < first ? n : last - first + 1;
    return total / ((span * this.bucketMs) / 1000);
  }

  rateBuckets(seconds) {
    return Math.max(1, Math.round((seconds * 1000) / this.bucketMs));
  }

  /** Called after every change (the chart redraws). */
  schedule() {}
}
