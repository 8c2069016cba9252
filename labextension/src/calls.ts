/**
 * The served app's routes, read from its OpenAPI document, and a Python call of each one
 * for the "Insert example call" button.
 */

export interface IOperation {
  method: string; // upper case
  path: string; // the route template, e.g. "/hello/{name}"
  summary: string;
  operationId: string;
  operation: any; // the OpenAPI operation object
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** A path of nb2api's own job endpoints, which every app has beside the notebook's routes. */
const JOBS = /^\/jobs(\/|$)/;

/** The notebook's operations in an OpenAPI document, in the document's order. */
export function operations(document: any): IOperation[] {
  const result: IOperation[] = [];
  for (const [path, item] of Object.entries<any>(document?.paths ?? {})) {
    if (JOBS.test(path)) {
      continue;
    }
    for (const method of METHODS) {
      const operation = item?.[method];
      if (operation) {
        result.push({
          method: method.toUpperCase(),
          path,
          summary: operation.summary ?? '',
          operationId: operation.operationId ?? '',
          operation
        });
      }
    }
  }
  return result;
}

function resolve(document: any, schema: any): any {
  let seen = 0;
  while (schema && typeof schema.$ref === 'string' && seen++ < 20) {
    const parts = schema.$ref.replace(/^#\//, '').split('/');
    schema = parts.reduce((node: any, part: string) => node?.[part], document);
  }
  return schema;
}

/** A value that the schema accepts: its example or default, else a plain one of its type. */
export function sampleValue(document: any, schema: any, depth = 0): unknown {
  schema = resolve(document, schema) ?? {};
  if (schema.examples?.length) {
    return schema.examples[0];
  }
  if ('example' in schema) {
    return schema.example;
  }
  if ('default' in schema) {
    return schema.default;
  }
  if ('const' in schema) {
    return schema.const;
  }
  if (schema.enum?.length) {
    return schema.enum[0];
  }
  const options = schema.anyOf ?? schema.oneOf;
  if (options?.length) {
    const notNull = options.find((o: any) => resolve(document, o)?.type !== 'null');
    return sampleValue(document, notNull ?? options[0], depth + 1);
  }
  if (schema.allOf?.length) {
    return sampleValue(document, schema.allOf[0], depth + 1);
  }
  const low = schema.exclusiveMinimum ?? schema.minimum;
  switch (schema.type) {
    case 'integer':
      return low !== undefined ? Math.floor(low) + 1 : 1;
    case 'number':
      return low !== undefined ? low + 1 : 1.0;
    case 'string':
      return schema.format === 'date-time'
        ? '2026-01-01T00:00:00Z'
        : schema.format === 'date'
          ? '2026-01-01'
          : 'text';
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array':
      return depth > 4 ? [] : [sampleValue(document, schema.items ?? {}, depth + 1)];
    case 'object':
    default:
      if (depth > 4 || !schema.properties) {
        return {};
      }
      return sampleObject(document, schema, depth + 1);
  }
}

function sampleObject(document: any, schema: any, depth: number): Record<string, unknown> {
  const required = new Set<string>(schema.required ?? []);
  const result: Record<string, unknown> = {};
  for (const [name, property] of Object.entries<any>(schema.properties ?? {})) {
    const resolved = resolve(document, property) ?? {};
    if (required.has(name) || 'default' in resolved || 'default' in property) {
      result[name] = sampleValue(document, property, depth);
    }
  }
  return result;
}

/** A JSON value written as a Python literal. */
export function pythonLiteral(value: unknown): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (value === true) {
    return 'True';
  }
  if (value === false) {
    return 'False';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  if (typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(pythonLiteral).join(', ')}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).map(
    ([k, v]) => `${JSON.stringify(k)}: ${pythonLiteral(v)}`
  );
  return `{${entries.join(', ')}}`;
}

/** The first named example of the request body, when the app documents one. */
function bodyExample(document: any, operation: any): unknown {
  const content = operation.requestBody?.content?.['application/json'];
  if (!content) {
    return undefined;
  }
  const named = Object.values<any>(content.examples ?? {});
  if (named.length && 'value' in named[0]) {
    return named[0].value;
  }
  if ('example' in content) {
    return content.example;
  }
  return sampleValue(document, content.schema ?? {});
}

/**
 * A cell's source that calls `operation` of the app at `base` (an absolute URL ending
 * in "/") with httpx, with Jupyter's `token` when there is one, and shows the answer.
 */
export function exampleCall(
  op: IOperation,
  document: any,
  base: string,
  token: string
): string {
  const query: Record<string, unknown> = {};
  let path = op.path;
  for (const parameter of op.operation.parameters ?? []) {
    const p = resolve(document, parameter);
    const named = Object.values<any>(p.examples ?? {});
    const value =
      named.length && 'value' in named[0]
        ? named[0].value
        : 'example' in p
          ? p.example
          : sampleValue(document, p.schema ?? {});
    if (p.in === 'path') {
      path = path.replace(`{${p.name}}`, encodeURIComponent(String(value)));
    } else if (p.in === 'query' && (p.required || 'default' in (p.schema ?? {}))) {
      query[p.name] = value;
    }
  }
  const url = base.replace(/\/$/, '') + path;
  const args = [`    ${JSON.stringify(url)},`];
  if (Object.keys(query).length) {
    args.push(`    params=${pythonLiteral(query)},`);
  }
  const body = bodyExample(document, op.operation);
  if (body !== undefined) {
    args.push(`    json=${pythonLiteral(body)},`);
  }
  const lines = [
    'import httpx',
    '',
    `# ${op.method} ${op.path}, served by nb2api from this notebook, through Jupyter`
  ];
  if (token) {
    lines.push("# (Jupyter's token is in the header: do not share this cell with it)");
    args.push(`    headers={"Authorization": ${JSON.stringify(`token ${token}`)}},`);
  }
  lines.push(
    `response = httpx.request(`,
    `    ${JSON.stringify(op.method)},`,
    ...args,
    '    timeout=60,',
    ')',
    'response.raise_for_status()',
    'response.json() if response.headers.get("content-type", "").startswith("application/json") else response'
  );
  return lines.join('\n');
}
