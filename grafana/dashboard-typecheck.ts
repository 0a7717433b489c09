import { resolve } from 'node:path';
import ts from 'typescript';

/**
 * Compiles each dashboard (name -> parsed JSON) as `literal satisfies DashboardFile` and returns the compiler's
 * errors, one line each, prefixed with the dashboard's name.
 */
export function typeErrors(dashboards: Record<string, unknown>): string[] {
  const files = new Map(
    Object.entries(dashboards).map(([name, json]) => [
      resolve('grafana', `${name.replace(/\W/g, '_')}.dashboard-check.ts`),
      {
        name,
        text: `import type { DashboardFile } from './dashboard-schema.js';\n\nexport const dashboard = ${JSON.stringify(json, null, 2)} satisfies DashboardFile;\n`,
      },
    ]),
  );
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: ['node'],
  };
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
  host.readFile = (f) => files.get(f)?.text ?? readFile.call(host, f);
  host.getSourceFile = (f, language, ...rest) => {
    const file = files.get(f);
    return file
      ? ts.createSourceFile(f, file.text, language)
      : getSourceFile.call(host, f, language, ...rest);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? (files.get(d.file.fileName)?.name ?? d.file.fileName) : 'program';
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
    return `${where}:${line}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}
