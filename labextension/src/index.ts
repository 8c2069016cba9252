import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage,
  ToolbarButton
} from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  INotebookModel,
  INotebookTracker,
  NotebookPanel
} from '@jupyterlab/notebook';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { appUrl, IServedApp, listApps, mcpUrl, serve, stop } from './api';
import { ApiPanel } from './panel';

const SERVED_CLASS = 'nb2api-served';

/**
 * The "Serve as API" controls of one notebook panel: a button that saves and serves
 * the notebook and opens its docs, and, while it is served, "API docs", "MCP URL" (copies
 * the URL agents call its functions at) and "Stop API".
 * Saving a served notebook reloads it; a version that cannot be served is reported and
 * the previous one keeps serving.
 */
class ServeControls implements IDisposable {
  constructor(
    private panel: NotebookPanel,
    private context: DocumentRegistry.IContext<INotebookModel>,
    private changed: () => void
  ) {
    this.serveButton = new ToolbarButton({
      className: 'nb2api-serve-button',
      label: 'Serve as API',
      tooltip:
        'Save this notebook and serve its marked cells as an HTTP API (nb2api)',
      onClick: () => void this.onServe()
    });
    this.docsButton = new ToolbarButton({
      className: 'nb2api-docs-button',
      label: 'API docs',
      tooltip: "Open the served API's interactive docs",
      onClick: () => this.openDocs()
    });
    this.mcpButton = new ToolbarButton({
      className: 'nb2api-mcp-button',
      label: 'MCP URL',
      tooltip: "The URL of this notebook's functions as MCP tools, for an agent",
      onClick: () => void this.showMcpUrl()
    });
    this.stopButton = new ToolbarButton({
      className: 'nb2api-stop-button',
      label: 'Stop API',
      tooltip: 'Stop serving this notebook as an API',
      onClick: () => void this.onStop()
    });
    const toolbar = panel.toolbar;
    toolbar.insertItem(10, 'nb2apiServe', this.serveButton);
    toolbar.insertItem(11, 'nb2apiDocs', this.docsButton);
    toolbar.insertItem(12, 'nb2apiMcp', this.mcpButton);
    toolbar.insertItem(13, 'nb2apiStop', this.stopButton);
    this.render();

    context.saveState.connect(this.onSaveState, this);
    void this.refresh();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.context.saveState.disconnect(this.onSaveState, this);
    this.serveButton.dispose();
    this.docsButton.dispose();
    this.mcpButton.dispose();
    this.stopButton.dispose();
  }

  private get path(): string {
    return this.context.localPath;
  }

  /** Pick up a service started earlier, e.g. before the page was reloaded. */
  private async refresh(): Promise<void> {
    try {
      const apps = await listApps();
      this.app = apps.find(app => app.path === this.path) ?? null;
    } catch (error) {
      console.warn('nb2api: cannot list served notebooks', error);
    }
    this.render();
  }

  private async onServe(): Promise<void> {
    if (this.busy) {
      return;
    }
    // Open the tab now, while the click still counts as a user gesture, so that no
    // popup blocker stops it; the docs URL is known only once the notebook loaded.
    const tab = window.open('', '_blank');
    if (tab) {
      tab.document.title = 'Starting API…';
      tab.document.body.textContent = `Loading ${this.path} as an API…`;
    }
    this.setBusy(true);
    try {
      await this.context.save();
      const app = await serve(this.path);
      this.app = app;
      if (tab) {
        tab.location.href = appUrl(app, 'docs');
      } else {
        this.openDocs();
      }
      if (app.error) {
        void showErrorMessage(
          'The saved notebook cannot be served; the previous version keeps serving',
          app.error
        );
      }
    } catch (error) {
      tab?.close();
      void showErrorMessage(
        'Cannot serve this notebook as an API',
        (error as Error).message
      );
    } finally {
      this.setBusy(false);
    }
  }

  private async onStop(): Promise<void> {
    if (!this.app || this.busy) {
      return;
    }
    this.setBusy(true);
    try {
      await stop(this.app.id);
    } catch (error) {
      console.warn('nb2api: stop failed', error); // most likely already stopped
    } finally {
      this.app = null;
      this.setBusy(false);
    }
  }

  private openDocs(): void {
    if (this.app) {
      window.open(appUrl(this.app, 'docs'), '_blank');
    }
  }

  /** Show the MCP URL, selected and ready to copy, with a button that copies it. */
  private async showMcpUrl(): Promise<void> {
    if (!this.app) {
      return;
    }
    const url = mcpUrl(this.app);
    const body = document.createElement('div');
    const input = document.createElement('input');
    input.className = 'nb2api-mcp-url';
    input.readOnly = true;
    input.value = url;
    input.style.width = '100%';
    input.addEventListener('focus', () => input.select());
    const note = document.createElement('p');
    note.textContent =
      "Add it to an agent's MCP servers (Streamable HTTP), with your Jupyter token " +
      'as a bearer token: Authorization: Bearer <token>.';
    body.append(input, note);
    const result = await showDialog({
      title: `MCP tools of ${this.path}`,
      body: new Widget({ node: body }),
      buttons: [
        Dialog.cancelButton({ label: 'Close' }),
        Dialog.okButton({ label: 'Copy' })
      ]
    });
    if (result.button.accept) {
      Clipboard.copyToSystem(url);
      Notification.info(`Copied the MCP URL: ${url}`, { autoClose: 5000 });
    }
  }

  /** A save while served reloads the service (the server also watches the file). */
  private onSaveState(
    _: DocumentRegistry.IContext<INotebookModel>,
    state: DocumentRegistry.SaveState
  ): void {
    if (state !== 'completed' || !this.app || this.busy) {
      return;
    }
    void this.reload();
  }

  private async reload(): Promise<void> {
    this.setBusy(true);
    try {
      const app = await serve(this.path);
      const newError = app.error && app.error !== this.app?.error;
      this.app = app;
      if (newError) {
        void showErrorMessage(
          'The saved notebook cannot be served; the previous version keeps serving',
          app.error as string
        );
      }
    } catch (error) {
      // The path is gone or the service was stopped elsewhere.
      this.app = null;
      void showErrorMessage(
        'Cannot serve this notebook as an API',
        (error as Error).message
      );
    } finally {
      this.setBusy(false);
    }
  }

  private setBusy(busy: boolean): void {
    this.busy = busy;
    this.render();
    this.changed(); // the API panel reads the new state
  }

  private render(): void {
    const served = this.app !== null;
    this.serveButton.setHidden(served);
    this.docsButton.setHidden(!served);
    this.mcpButton.setHidden(!served);
    this.stopButton.setHidden(!served);
    this.serveButton.enabled = !this.busy;
    this.stopButton.enabled = !this.busy;
    this.panel.toggleClass(SERVED_CLASS, served);
    this.docsButton.node.title = served
      ? `Serving ${this.path} as an API: open its docs`
      : '';
  }

  private app: IServedApp | null = null;
  private busy = false;
  private _isDisposed = false;
  private serveButton: ToolbarButton;
  private docsButton: ToolbarButton;
  private mcpButton: ToolbarButton;
  private stopButton: ToolbarButton;
}

/**
 * Adds the nb2api controls to every notebook's toolbar.
 */
export class ServeButtonExtension
  implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel>
{
  constructor(private changed: () => void = () => undefined) {}

  createNew(
    panel: NotebookPanel,
    context: DocumentRegistry.IContext<INotebookModel>
  ): IDisposable {
    const controls = new ServeControls(panel, context, this.changed);
    return new DisposableDelegate(() => controls.dispose());
  }
}

const OPEN_PANEL = 'nb2api:open-api-panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nb2api-labextension:plugin',
  description:
    'A "Serve as API" button on the notebook toolbar, and an API panel in the right sidebar.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const panel = new ApiPanel(app, tracker);
    app.shell.add(panel, 'right', { rank: 900 });
    app.docRegistry.addWidgetExtension(
      'Notebook',
      new ServeButtonExtension(() => panel.refreshSoon())
    );
    app.commands.addCommand(OPEN_PANEL, {
      label: 'Show the API panel',
      caption: "The served notebook's routes, traffic and errors",
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN_PANEL, category: 'nb2api' });
  }
};

export default plugin;
