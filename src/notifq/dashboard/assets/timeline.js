// A campaign chart's data from GET /campaigns/{id}/timeline: the server's buckets of the messages' own finish
// times (and attempts and retries, which only it has). Read when the page opens, again every 10 s while the
// campaign runs (live counts fill in between), and once more when it has finished, so that a finished campaign's
// chart, and its Peak, is the same in every view. A slow answer spaces the reads out (20 times its duration).

import { request } from './api.js';
import { FINISHED } from './components.js';
import { isAbort, sleep } from './dom.js';

const EVERY_MS = 10_000;

export class CampaignTimeline {
  /** `onSeed(totals, at)` after each read: the {sent, failed} it holds, as of server time `at`. */
  constructor({ chart, path, signal, onSeed }) {
    Object.assign(this, { chart, path, signal, onSeed });
    this.campaign = null;
    this.timer = null;
    this.busy = false;
    this.requestedAt = -Infinity; // server time of the last read's request
    this.finalFor = null; // the completedAt whose final read is done (or under way)
    this.available = true; // false on a server without the endpoint: live counts only
    signal.addEventListener('abort', () => clearTimeout(this.timer), { once: true });
  }

  async read() {
    if (this.busy || !this.available) return;
    this.busy = true;
    clearTimeout(this.timer);
    this.timer = null;
    const started = performance.now();
    this.requestedAt = this.chart.now();
    try {
      const { data, response } = await request(this.path, { signal: this.signal });
      this.chart.setServerDate(response.headers.get('Date'));
      const at = this.requestedAt;
      this.onSeed(this.chart.seed(data.bucketSeconds, data.points, at), at);
    } catch (error) {
      if (isAbort(error) || error.status === 401) throw error;
      if (error.status === 404 || error.status === 405) this.available = false;
    } finally {
      this.busy = false;
    }
    this.next(Math.max(EVERY_MS, 20 * (performance.now() - started)));
  }

  next(ms) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.signal.aborted || !this.campaign || FINISHED.has(this.campaign.status) || !this.available) return;
    this.timer = setTimeout(() => this.read().catch(() => {}), ms);
  }

  /** After each campaign update: the first read, the next one, or the final one once it has finished. */
  onUpdate(c) {
    this.campaign = c;
    if (!FINISHED.has(c.status)) {
      this.finalFor = null;
      if (this.requestedAt === -Infinity) this.read().catch(() => {});
      else if (!this.timer && !this.busy) this.next(EVERY_MS);
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    // Read once more unless the last read began after its end (a page opened on a finished campaign).
    const end = Date.parse(c.completedAt);
    if (this.finalFor === c.completedAt || !(this.requestedAt < end + 2000)) return;
    this.finalFor = c.completedAt;
    const settle = async () => {
      while (this.busy) await sleep(100, this.signal); // that read may have begun before the end
      await this.read();
    };
    settle().catch(() => {});
  }
}
