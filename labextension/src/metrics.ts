/**
 * The served app's own Prometheus metrics, turned into the API panel's live figures.
 *
 * The panel reads `/metrics` every few seconds and keeps the samples of the last five
 * minutes. A route's figures are differences between the newest sample and the oldest one
 * in the window: counters only grow (a restarted child starts again from zero, which is
 * seen as a drop and starts the window anew).
 */

/** One line of the text exposition format: `name{label="v",...} value`. */
export interface ISample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parse Prometheus' text format (comments and malformed lines are skipped). */
export function parseMetrics(text: string): ISample[] {
  const samples: ISample[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) {
      continue;
    }
    const match = LINE.exec(line);
    if (!match) {
      continue;
    }
    const labels: Record<string, string> = {};
    const body = match[2] ?? '';
    LABEL.lastIndex = 0;
    for (let label = LABEL.exec(body); label; label = LABEL.exec(body)) {
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, c: string) =>
        c === 'n' ? '\n' : c
      );
    }
    const value = Number(match[3]);
    if (!Number.isNaN(value)) {
      samples.push({ name: match[1], labels, value });
    }
  }
  return samples;
}

/** What one scrape says about one route (`"POST /add"`): cumulative counts. */
export interface IRouteCounts {
  requests: number;
  errors: number; // answers with a 5xx status
  /** Cumulative histogram buckets of the latency: upper bound (s) -> count. */
  buckets: Map<number, number>;
}

/** One scrape of the app: the time it was taken and each route's counts. */
export interface IScrape {
  time: number; // ms since the epoch
  routes: Map<string, IRouteCounts>;
  gauges: ISample[];
}

export function routeKey(method: string, path: string): string {
  return `${method.toUpperCase()} ${path}`;
}

/** Group the samples of one scrape by route. */
export function scrape(samples: ISample[], time: number): IScrape {
  const routes = new Map<string, IRouteCounts>();
  const counts = (labels: Record<string, string>): IRouteCounts => {
    const key = routeKey(labels.method ?? '', labels.route ?? '');
    let entry = routes.get(key);
    if (!entry) {
      entry = { requests: 0, errors: 0, buckets: new Map() };
      routes.set(key, entry);
    }
    return entry;
  };
  const gauges: ISample[] = [];
  for (const sample of samples) {
    if (sample.name === 'nb2api_requests_total') {
      const entry = counts(sample.labels);
      entry.requests += sample.value;
      if ((sample.labels.status ?? '').startsWith('5')) {
        entry.errors += sample.value;
      }
    } else if (sample.name === 'nb2api_request_duration_seconds_bucket') {
      const bound =
        sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le);
      const buckets = counts(sample.labels).buckets;
      buckets.set(bound, (buckets.get(bound) ?? 0) + sample.value);
    } else if (
      sample.name.startsWith('nb2api_pool_') ||
      sample.name.startsWith('nb2api_jobs')
    ) {
      gauges.push(sample);
    }
  }
  return { time, routes, gauges };
}

/** A route's figures over the window. */
export interface IRouteFigures {
  requests: number;
  errorRate: number | null; // null with no requests
  p50: number | null; // seconds
  p99: number | null;
  /** Requests per scrape interval, oldest first, for the sparkline. */
  series: number[];
}

/**
 * The quantile `q` of the requests counted by cumulative `buckets` (the differences over
 * the window), interpolated linearly inside its bucket as Prometheus'
 * `histogram_quantile` does.
 */
export function quantile(q: number, buckets: Map<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = bounds.length ? buckets.get(bounds[bounds.length - 1]) ?? 0 : 0;
  if (total <= 0) {
    return null;
  }
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound) ?? 0;
    if (count >= rank) {
      if (bound === Infinity) {
        return lowerBound; // past the last finite bucket: its bound is all we know
      }
      const inBucket = count - lowerCount;
      const fraction = inBucket > 0 ? (rank - lowerCount) / inBucket : 1;
      return lowerBound + (bound - lowerBound) * fraction;
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

/** The scrapes of the last `windowMs`, and each route's figures over them. */
export class MetricsWindow {
  constructor(readonly windowMs = 5 * 60 * 1000) {}

  add(next: IScrape): void {
    const last = this.scrapes[this.scrapes.length - 1];
    if (last && restarted(last, next)) {
      this.scrapes = []; // a new child: its counters started again from zero
    }
    this.scrapes.push(next);
    const oldest = next.time - this.windowMs;
    while (this.scrapes.length > 2 && this.scrapes[1].time <= oldest) {
      this.scrapes.shift();
    }
  }

  clear(): void {
    this.scrapes = [];
  }

  get latest(): IScrape | null {
    return this.scrapes[this.scrapes.length - 1] ?? null;
  }

  figures(key: string): IRouteFigures {
    const first = this.scrapes[0];
    const last = this.latest;
    const empty = { requests: 0, errors: 0, buckets: new Map<number, number>() };
    // one scrape only: the counts since the child started are the window
    const start = this.scrapes.length > 1 ? first.routes.get(key) ?? empty : empty;
    const end = last?.routes.get(key) ?? empty;
    const requests = end.requests - start.requests;
    const buckets = new Map<number, number>();
    for (const [bound, count] of end.buckets) {
      buckets.set(bound, count - (start.buckets.get(bound) ?? 0));
    }
    const series: number[] = [];
    for (let i = 1; i < this.scrapes.length; i++) {
      const before = this.scrapes[i - 1].routes.get(key)?.requests ?? 0;
      const after = this.scrapes[i].routes.get(key)?.requests ?? 0;
      series.push(Math.max(0, after - before));
    }
    return {
      requests,
      errorRate: requests > 0 ? (end.errors - start.errors) / requests : null,
      p50: quantile(0.5, buckets),
      p99: quantile(0.99, buckets),
      series
    };
  }

  private scrapes: IScrape[] = [];
}

function restarted(before: IScrape, after: IScrape): boolean {
  for (const [key, counts] of before.routes) {
    if ((after.routes.get(key)?.requests ?? 0) < counts.requests) {
      return true;
    }
  }
  return false;
}
