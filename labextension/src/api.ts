import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * A notebook served as an API, as the nb2api server extension describes it.
 */
export interface IServedApp {
  id: string;
  path: string;
  /** URL path of the app, including the server's base URL. */
  url: string;
  docs_url: string;
  /** URL path of its MCP endpoint (Streamable HTTP), where agents call its functions. */
  mcp_url: string;
  status: 'running' | 'stopped';
  /** Why the last saved version could not be served (the previous one keeps serving). */
  error: string | null;
  /** The cell (1-based, every cell counted) and line that `error` names. */
  error_cell: { cell: number; line: number | null } | null;
  /** When the child serving now was started (seconds since the epoch). */
  started: number;
  reloaded: number | null;
}

/** A 500 of a served notebook, with its traceback (shown in the panel only). */
export interface IRouteError {
  time: string;
  route: string | null; // the notebook function
  error_id: string;
  message: string; // the exception's one line
  traceback: string;
  cell: number | null; // 1-based, every cell counted
  line: number | null;
}

/**
 * Call the nb2api REST API of the Jupyter server; throw an Error whose message is the
 * server's one-line reason when the call fails.
 */
async function request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nb2api', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = data?.message || data?.reason || response.statusText;
    throw new Error(message || `HTTP ${response.status}`);
  }
  return data as T;
}

/** The absolute URL of a served app's page, e.g. its docs. */
export function appUrl(app: IServedApp, page: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'nb2api', 'apps', app.id, page);
}

/** The app's recent errors, newest first. */
export function listErrors(id: string): Promise<IRouteError[]> {
  return request<IRouteError[]>(`apps/${id}/errors`);
}

/**
 * GET a page of a served app (its `/metrics`, its `/openapi.json`) through the Jupyter
 * server's authenticated proxy.
 */
export async function fetchApp(app: IServedApp, page: string): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(
    appUrl(app, page),
    { method: 'GET' },
    settings
  );
  if (!response.ok) {
    throw new Error(`${page}: HTTP ${response.status}`);
  }
  return response;
}

/** The absolute URL of a served app's MCP endpoint, for an agent's configuration. */
export function mcpUrl(app: IServedApp): string {
  return new URL(appUrl(app, 'mcp'), window.location.href).href;
}

export function listApps(): Promise<IServedApp[]> {
  return request<IServedApp[]>('apps');
}

/** Serve a notebook, or reload it if it changed since it was last loaded. */
export function serve(path: string): Promise<IServedApp> {
  return request<IServedApp>('serve', {
    method: 'POST',
    body: JSON.stringify({ path })
  });
}

export async function stop(id: string): Promise<void> {
  await request<null>(`apps/${id}`, { method: 'DELETE' });
}
