// Problems of a value against its schema: as text, and where forms show them.

import type { ErrorSchema } from '@rjsf/utils';

export interface SchemaProblem {
  instancePath: string;
  keyword?: string;
  message: string;
  params?: Record<string, unknown>;
}

export interface CheckResult {
  problems: SchemaProblem[];
  /** Why the schema could not be compiled, if it could not: nothing was checked. */
  compileError?: string;
}

/** problemText shows a problem as "<field.path>: <message>". */
export function problemText(p: SchemaProblem): string {
  const path = p.instancePath.replace(/^\//, '').replace(/\//g, '.');
  return path ? `${path}: ${p.message}` : p.message;
}

/** errorSchema puts problems where rjsf shows them: under the field they are about. */
export function errorSchema(problems: SchemaProblem[]): ErrorSchema {
  const root: Record<string, unknown> = {};
  for (const p of problems) {
    const path = p.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let message = p.message;
    if (p.keyword === 'required' && typeof p.params?.missingProperty === 'string') {
      path.push(p.params.missingProperty);
      message = 'is required';
    }
    let at = root;
    for (const key of path) {
      at[key] ??= {};
      at = at[key] as Record<string, unknown>;
    }
    ((at.__errors as string[] | undefined) ?? (at.__errors = [])).push(message);
  }
  return root as ErrorSchema;
}

