/**
 * The README's API reference is kept true: its route table lists exactly
 * the routes a node registers (fastify's onRoute, HEAD aside), and its
 * error table every code of the error catalogue with the catalogue's status.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { errorCatalogue } from '../../src/core/errors.js';
import { startTestNode, type TestNode } from './http-harness.js';

const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');

/** The text of a section, from its heading to the next heading of the same or a higher level. */
function section(heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README has no "${heading}"`);
  const level = heading.indexOf(' ');
  const rest = readme.slice(start + heading.length + 2);
  const next = rest.search(new RegExp(`\\n#{1,${level}} `));
  return next < 0 ? rest : rest.slice(0, next);
}

const methods = 'GET|POST|PUT|PATCH|DELETE';
const routeRow = new RegExp(`^\\| ((?:${methods})(?:, (?:${methods}))*) \\| \`([^\`]+)\` \\|`);

function documentedRoutes(): string[] {
  const routes: string[] = [];
  for (const line of section('## API reference').split('\n')) {
    const match = routeRow.exec(line);
    if (match === null) continue;
    for (const method of match[1]!.split(', ')) routes.push(`${method} ${match[2]}`);
  }
  return routes;
}

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});
afterAll(async () => {
  await node?.stop();
});

describe('the README API reference', () => {
  test('lists every route the node serves, and no other', () => {
    const registered = [...new Set(node.node.app.iorioRoutes.filter((route) => route.method !== 'HEAD').map((route) => `${route.method} ${route.url}`))].sort();
    const documented = documentedRoutes();
    expect(documented.length).toBeGreaterThan(40);
    expect(new Set(documented).size, 'a route documented twice').toBe(documented.length);
    expect([...documented].sort()).toEqual(registered);
  });

  test('every GET also answers HEAD (but /listen), as the conventions say', () => {
    const heads = new Set(node.node.app.iorioRoutes.filter((route) => route.method === 'HEAD').map((route) => route.url));
    const gets = node.node.app.iorioRoutes.filter((route) => route.method === 'GET' && route.url !== '/listen').map((route) => route.url);
    expect(gets.filter((url) => !heads.has(url))).toEqual([]);
  });

  test('lists every error type with its status', () => {
    const documented = new Map<string, number>();
    for (const line of section('### Errors').split('\n')) {
      const match = /^\| `([a-z-]+)` \| (\d{3}) \|/.exec(line);
      if (match !== null) documented.set(match[1]!, Number(match[2]));
    }
    const catalogue = new Map(Object.entries(errorCatalogue).map(([code, spec]) => [code, spec.status]));
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(catalogue));
  });
});
