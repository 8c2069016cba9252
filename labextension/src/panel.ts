import { JupyterFrontEnd } from '@jupyterlab/application';
import { Clipboard } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { copyIcon, LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  fetchApp,
  IRouteError,
  IServedApp,
  listApps,
  listErrors
} from './api';
import { exampleCall, IOperation, operations } from './calls';
import { MetricsWindow, parseMetrics, routeKey, scrape } from './metrics';

/** Seconds between two reads of the app's metrics while the panel is shown. */
const REFRESH_MS = 3000;
const ERROR_CELL_CLASS = 'nb2api-error-cell';

const apiIconSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
  '<path class="jp-icon3" fill="#616161" d="M4 5h16v2H4zm0 6h10v2H4zm0 6h16v2H4z' +
  'M17 10l4 2-4 2z"/></svg>';
export const apiIcon = new LabIcon({ name: 'nb2api:api', svgstr: apiIconSvg });

/** `h('div', {class: 'x'}, child, 'text')`: an element whose text is never parsed as HTML. */
function h(
  tag: string,
  attributes: Record<string, string> = {},
  ...children: (Node | string | null)[]
): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null) {
      element.append(child);
    }
  }
  return element;
}

function formatSeconds(seconds: number | null): string {
  if (seconds === null) {
    return '–';
  }
  return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
}

function sparkline(series: number[]): SVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const width = 60;
  const height = 16;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'nb2api-sparkline');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const points = series.length > 1 ? series : [0, ...series, 0].slice(-2);
  const top = Math.max(1, ...points);
  const step = width / Math.max(1, points.length - 1);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute(
    'points',
    points
      .map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / top) * (height - 2)).toFixed(1)}`)
      .join(' ')
  );
  line.setAttribute('data-values', series.join(','));
  svg.append(line);
  return svg;
}

/**
 * The "API" panel of the right sidebar: for the current notebook while it is served, its
 * URLs, its routes with live figures from the app's own `/metrics`, its pool, its last
 * errors (a click opens the cell that raised), its reload state, and an "Insert example
 * call" per route. It reads only the Jupyter server (the served app through its proxy),
 * and only while it is shown.
 */
export class ApiPanel extends Widget {
  constructor(
    private app: JupyterFrontEnd,
    private tracker: INotebookTracker
  ) {
    super();
    this.id = 'nb2api-api-panel';
    this.addClass('nb2api-ApiPanel');
    this.title.icon = apiIcon;
    this.title.caption = 'API: the served notebook';
    tracker.currentChanged.connect(() => this.schedule(0), this);
    this.render();
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  /** Read now (after a click on "Serve as API", say) if the panel is shown. */
  refreshSoon(): void {
    this.schedule(0);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.schedule(0);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.stopPolling(); // no polling while hidden
  }

  private get notebookPath(): string | null {
    return this.tracker.currentWidget?.context.localPath ?? null;
  }

  private schedule(delay: number): void {
    this.stopPolling();
    if (!this.isVisible || this.isDisposed) {
      return;
    }
    this.timer = window.setTimeout(() => void this.tick(), delay);
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private async tick(): Promise<void> {
    this.timer = null;
    try {
      await this.refresh();
    } catch (error) {
      this.problem = (error as Error).message;
      console.warn('nb2api: API panel', error);
    }
    this.render();
    this.schedule(REFRESH_MS);
  }

  private async refresh(): Promise<void> {
    this.problem = null;
    const path = this.notebookPath;
    const served = path ? (await listApps()).find(a => a.path === path) ?? null : null;
    const generation = served ? `${served.id}:${served.started}:${served.reloaded}` : null;
    if (generation !== this.generation) {
      // another notebook, or a new version of this one: start the figures afresh
      this.generation = generation;
      this.window.clear();
      this.operations = [];
      this.version = null;
      this.selectedError = null;
      if (served) {
        const response = await fetchApp(served, 'openapi.json');
        this.version = response.headers.get('X-Notebook-Version');
        this.document = await response.json();
        this.operations = operations(this.document);
      }
    }
    this.served = served;
    if (!served || served.status !== 'running') {
      this.errors = [];
      return;
    }
    const metrics = await fetchApp(served, 'metrics');
    this.window.add(scrape(parseMetrics(await metrics.text()), Date.now()));
    this.errors = await listErrors(served.id);
  }

  // ---- rendering ---------------------------------------------------------------

  private render(): void {
    const served = this.served;
    const body: (Node | null)[] = [h('h2', {}, 'API')];
    if (!this.notebookPath) {
      body.push(h('p', { class: 'nb2api-muted' }, 'Open a notebook to see its API.'));
    } else if (!served) {
      body.push(
        h(
          'p',
          { class: 'nb2api-muted nb2api-not-served' },
          `${this.notebookPath} is not served. Click "Serve as API" on its toolbar.`
        )
      );
    } else {
      body.push(
        this.renderState(served),
        this.renderLinks(served),
        this.renderRoutes(served),
        this.renderPool(),
        this.renderErrors()
      );
    }
    if (this.problem) {
      body.push(h('p', { class: 'nb2api-problem' }, this.problem));
    }
    this.node.replaceChildren(...body.filter((n): n is Node => n !== null));
  }

  private renderState(served: IServedApp): HTMLElement {
    const state = h('div', { class: 'nb2api-state' });
    if (served.status !== 'running') {
      state.append(h('p', { class: 'nb2api-bad' }, `Stopped: ${served.error ?? ''}`));
    } else if (served.error) {
      const message = h(
        'p',
        { class: 'nb2api-bad nb2api-reload-state', 'data-state': 'last-good' },
        'The last good version serves. The saved version cannot be served: ',
        h('span', { class: 'nb2api-error-message' }, served.error)
      );
      const where = served.error_cell;
      if (where) {
        const link = h(
          'a',
          { class: 'nb2api-cell-link', href: '#' },
          `Go to cell ${where.cell}${where.line ? `, line ${where.line}` : ''}`
        );
        link.onclick = event => {
          event.preventDefault();
          void this.openCell(served.path, where.cell, where.line);
        };
        message.append(' ', link);
      }
      state.append(message);
    } else {
      const when = new Date((served.reloaded ?? served.started) * 1000);
      state.append(
        h(
          'p',
          { class: 'nb2api-good nb2api-reload-state', 'data-state': 'current' },
          `The saved version serves (${served.reloaded ? 'reloaded' : 'started'} ` +
            `${when.toLocaleTimeString()}).`
        )
      );
    }
    if (this.version) {
      state.append(
        h('p', { class: 'nb2api-version' }, 'Version ', h('code', {}, this.version))
      );
    }
    return state;
  }

  private renderLinks(served: IServedApp): HTMLElement {
    const absolute = (path: string) => new URL(path, window.location.origin).href;
    const links: [string, string][] = [
      ['Base URL', absolute(served.url)],
      ['Docs', absolute(served.docs_url)]
    ];
    if (served.mcp_url) {
      links.push(['MCP', absolute(served.mcp_url)]);
    }
    const list = h('dl', { class: 'nb2api-links' });
    for (const [label, url] of links) {
      const copy = h('button', {
        class: 'jp-Button jp-mod-minimal nb2api-copy',
        title: `Copy the ${label} URL`,
        'aria-label': `Copy the ${label} URL`
      });
      copy.append(copyIcon.element({ tag: 'span' }));
      copy.onclick = () => Clipboard.copyToSystem(url);
      const value =
        label === 'Docs'
          ? h('a', { href: url, target: '_blank', rel: 'noopener' }, url)
          : h('code', {}, url);
      list.append(
        h('dt', {}, label),
        h('dd', { 'data-link': label.toLowerCase() }, value, copy)
      );
    }
    return list;
  }

  private renderRoutes(served: IServedApp): HTMLElement {
    const list = h('ul', { class: 'nb2api-routes' });
    for (const operation of this.operations) {
      const figures = this.window.figures(routeKey(operation.method, operation.path));
      const insert = h(
        'button',
        {
          class: 'jp-Button jp-mod-minimal nb2api-insert',
          title: 'Insert a cell below the active one that calls this route'
        },
        'Insert example call'
      );
      insert.onclick = () => this.insertCall(served, operation);
      const figure = (name: string, label: string, value: string, title: string) =>
        h('span', { class: `nb2api-figure nb2api-${name}`, title }, label, h('b', {}, value));
      list.append(
        h(
          'li',
          { class: 'nb2api-route', 'data-route': `${operation.method} ${operation.path}` },
          h(
            'div',
            { class: 'nb2api-route-head' },
            h('span', { class: 'nb2api-method' }, operation.method),
            h('code', {}, operation.path)
          ),
          operation.summary ? h('div', { class: 'nb2api-summary' }, operation.summary) : null,
          h(
            'div',
            { class: 'nb2api-figures' },
            figure('requests', 'req ', String(figures.requests), 'Requests in the last 5 minutes'),
            figure(
              'error-rate',
              'err ',
              figures.errorRate === null ? '–' : `${(figures.errorRate * 100).toFixed(0)}%`,
              'Share of 5xx answers in the last 5 minutes'
            ),
            figure('p50', 'p50 ', formatSeconds(figures.p50), 'Median latency'),
            figure('p99', 'p99 ', formatSeconds(figures.p99), '99th percentile latency'),
            sparkline(figures.series)
          ),
          insert
        )
      );
    }
    return h('section', {}, h('h3', {}, 'Routes, last 5 minutes'), list);
  }

  private renderPool(): HTMLElement | null {
    const gauges = this.window.latest?.gauges ?? [];
    if (gauges.length === 0) {
      return null;
    }
    const pools = new Map<string, Record<string, number>>();
    const jobs = new Map<string, number>(); // jobs that reached each status, every route
    for (const sample of gauges) {
      if (sample.name === 'nb2api_jobs_total' && sample.labels.status) {
        const status = sample.labels.status;
        jobs.set(status, (jobs.get(status) ?? 0) + sample.value);
        continue;
      }
      if (!sample.name.startsWith('nb2api_pool_')) {
        continue;
      }
      const pool = sample.labels.pool ?? sample.labels.executor ?? 'thread';
      const entry = pools.get(pool) ?? {};
      entry[sample.name.replace('nb2api_pool_', '')] = sample.value;
      pools.set(pool, entry);
    }
    const list = h('ul', { class: 'nb2api-pools' });
    for (const [pool, values] of pools) {
      list.append(
        h(
          'li',
          { 'data-pool': pool },
          `${pool} pool: ${values.busy_workers ?? 0} busy of ${values.workers ?? '?'}, ` +
            `${values.queued_calls ?? 0} queued`
        )
      );
    }
    if (jobs.size) {
      const counts = [...jobs].map(([status, n]) => `${status} ${n}`).join(', ');
      list.append(h('li', { class: 'nb2api-jobs' }, `jobs since start: ${counts}`));
    }
    return h('section', {}, h('h3', {}, 'Workers'), list);
  }

  private renderErrors(): HTMLElement {
    const section = h('section', { class: 'nb2api-errors' }, h('h3', {}, 'Last errors'));
    if (this.errors.length === 0) {
      section.append(h('p', { class: 'nb2api-muted' }, 'No errors.'));
      return section;
    }
    const list = h('ul');
    for (const error of this.errors) {
      const item = h(
        'li',
        { class: 'nb2api-error', 'data-error-id': error.error_id, tabindex: '0' },
        h('span', { class: 'nb2api-time' }, error.time.slice(11, 19)),
        ' ',
        h('code', {}, error.route ?? ''),
        ' ',
        h('span', { class: 'nb2api-error-id' }, error.error_id),
        h('div', { class: 'nb2api-error-line' }, error.message)
      );
      if (error.error_id === this.selectedError) {
        item.classList.add('nb2api-selected');
        item.append(h('pre', { class: 'nb2api-traceback' }, error.traceback));
      }
      const open = () => {
        this.selectedError = error.error_id;
        this.render();
        if (error.cell !== null && this.served) {
          void this.openCell(this.served.path, error.cell, error.line);
        }
      };
      item.onclick = open;
      item.onkeydown = event => {
        if (event.key === 'Enter') {
          open();
        }
      };
      list.append(item);
    }
    section.append(list);
    return section;
  }

  // ---- actions -------------------------------------------------------------------

  /** Open the notebook at `cell` (1-based) and `line`, and highlight the cell. */
  private async openCell(path: string, cell: number, line: number | null): Promise<void> {
    const widget = (await this.app.commands.execute('docmanager:open', {
      path
    })) as NotebookPanel | undefined;
    if (!widget) {
      return;
    }
    await widget.context.ready;
    const notebook = widget.content;
    const index = cell - 1;
    if (index < 0 || index >= notebook.widgets.length) {
      return;
    }
    for (const other of notebook.widgets) {
      other.removeClass(ERROR_CELL_CLASS);
    }
    notebook.activeCellIndex = index;
    const target = notebook.widgets[index];
    target.addClass(ERROR_CELL_CLASS);
    await notebook.scrollToCell(target);
    if (line !== null && target.editor) {
      const last = Math.max(0, target.editor.lineCount - 1);
      target.editor.setCursorPosition({ line: Math.min(line - 1, last), column: 0 });
    }
    this.app.shell.activateById(widget.id);
  }

  /** A new cell below the active one of the current notebook: an httpx call of the route. */
  private insertCall(served: IServedApp, operation: IOperation): void {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return;
    }
    const settings = ServerConnection.makeSettings();
    const base = new URL(served.url, window.location.origin).href;
    const token = settings.token || PageConfig.getToken();
    const code = exampleCall(operation, this.document, base, token);
    const notebook = panel.content;
    NotebookActions.insertBelow(notebook);
    notebook.activeCell?.model.sharedModel.setSource(code);
  }

  private window = new MetricsWindow();
  private served: IServedApp | null = null;
  private generation: string | null = null;
  private operations: IOperation[] = [];
  private document: any = null;
  private version: string | null = null;
  private errors: IRouteError[] = [];
  private selectedError: string | null = null;
  private problem: string | null = null;
  private timer: number | null = null;
}
